"""Which local subscriptions an ACL change can affect (pure).

The decision is roomauthz's ``may_affect`` (``roomgate_common.aclevents``), asked for every
subscription of every candidate principal; the gateway never re-implements it. Candidates
are the only principals ``may_affect`` can answer True for: the change's subject (any
relation), and for ``agent_group`` everyone in the room ``agent-{subject}``
(``candidate_rooms``).
"""

from __future__ import annotations

from collections.abc import Iterable

from roomgate_common.aclevents import AclChange, Relation, may_affect
from roomgate_common.identity import PrincipalKind

KINDS = {kind.value: kind for kind in PrincipalKind}


def candidate_rooms(change: AclChange) -> list[str]:
    """Rooms whose every member is a candidate, whoever they are."""
    return [f"agent-{change.subject_id}"] if change.relation is Relation.AGENT_GROUP else []


def candidate_principal(change: AclChange) -> tuple[str, str]:
    """(kind, id) of the principal the change names."""
    kind = "agent" if change.relation is Relation.AGENT_GROUP else "user"
    return kind, change.subject_id


def rooms_to_recheck(
    changes: Iterable[AclChange], kind: str, principal_id: str, rooms: Iterable[str]
) -> list[str]:
    """The rooms of this principal's subscription set whose decision any of ``changes``
    may alter (in the order of ``rooms``)."""
    principal_kind = KINDS.get(kind)
    if principal_kind is None:
        return []
    changes = tuple(changes)
    return [
        room
        for room in rooms
        if any(may_affect(change, principal_kind, principal_id, room) for change in changes)
    ]
