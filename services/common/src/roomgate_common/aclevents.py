"""The ACL relations and their invalidation event (pub/sub
``roomgate_common.keys.ACL_CHANGED_CHANNEL``). Pure: standard library only. Shared by
roomauthz, which keeps the relations in Redis and publishes the event, and the gateway,
which re-checks the subscriptions an event may affect.

Every effective ACL change publishes exactly one message, JSON::

    {"version": 12, "changes": [{"op": "add", "relation": "agent_group",
                                  "subject_id": "7", "object_id": "3"}]}

``version`` is the ACL version after the change (``keys.ACL_VERSION``); ``changes`` lists the
entries that really changed, in the order they were applied (removes, then adds).
Consumers (the gateway, roomauthz's own ACL cache) call ``parse_acl_event`` and
``may_affect``.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

from roomgate_common.identity import PrincipalKind
from roomgate_common.rooms import RoomKind, parse_room

OPS = ("add", "remove")


class Relation(enum.Enum):
    """The ACL relations kept in Redis: subject id -> set of object ids."""

    AGENT_GROUP = "agent_group"  # agent id -> group ids
    USER_GROUP = "user_group"  # user id -> group ids
    USER_TEAM = "user_team"  # user id -> team ids


@dataclass(frozen=True, slots=True)
class AclChange:
    op: str  # "add" | "remove"
    relation: Relation
    subject_id: str
    object_id: str

    def to_json(self) -> str:
        """This change as the JSON object the event carries (fixed key order)."""
        return json.dumps(
            {
                "op": self.op,
                "relation": self.relation.value,
                "subject_id": self.subject_id,
                "object_id": self.object_id,
            }
        )


@dataclass(frozen=True, slots=True)
class AclChangedEvent:
    version: int
    changes: tuple[AclChange, ...]

    def to_json(self) -> str:
        changes = ", ".join(c.to_json() for c in self.changes)
        return f'{{"version": {self.version}, "changes": [{changes}]}}'


def parse_acl_event(data: bytes | str) -> AclChangedEvent:
    """The event in ``data``; ``ValueError`` when it is not a valid event."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError("acl event: not JSON") from exc
    if not isinstance(raw, dict) or set(raw) != {"version", "changes"}:
        raise ValueError("acl event: expected exactly 'version' and 'changes'")
    version, changes = raw["version"], raw["changes"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError("acl event: version must be a positive integer")
    if not isinstance(changes, list):
        raise ValueError("acl event: changes must be a list")
    parsed: list[AclChange] = []
    for item in changes:
        if not isinstance(item, dict) or set(item) != {
            "op",
            "relation",
            "subject_id",
            "object_id",
        }:
            raise ValueError("acl event: bad change entry")
        if item["op"] not in OPS:
            raise ValueError("acl event: bad op")
        try:
            relation = Relation(item["relation"])
        except ValueError:
            raise ValueError("acl event: bad relation") from None
        if not isinstance(item["subject_id"], str) or not isinstance(item["object_id"], str):
            raise ValueError("acl event: ids must be strings")
        parsed.append(AclChange(item["op"], relation, item["subject_id"], item["object_id"]))
    return AclChangedEvent(version, tuple(parsed))


def may_affect(
    change: AclChange, principal_kind: PrincipalKind, principal_id: str, room: str
) -> bool:
    """Whether ``change`` can alter the decision for this principal on ``room`` under the
    default checks (and any policy file, which can only use ACL data in agent-, group- and
    team- rooms). Conservative: False only when the decision cannot change.

    - agent_group (agent A, group G): room ``agent-A`` for anyone; ``group-G`` for agent A.
    - user_group (user U, group G): ``group-G`` and every ``agent-*`` room, for user U.
    - user_team (user U, team T): ``team-T`` for user U.
    """
    parsed = parse_room(room)
    if parsed is None:
        return False
    if change.relation is Relation.AGENT_GROUP:
        if parsed.kind is RoomKind.AGENT and parsed.arg == change.subject_id:
            return True
        return (
            principal_kind is PrincipalKind.AGENT
            and principal_id == change.subject_id
            and parsed.kind is RoomKind.GROUP
            and parsed.arg == change.object_id
        )
    if principal_kind is not PrincipalKind.USER or principal_id != change.subject_id:
        return False
    if change.relation is Relation.USER_GROUP:
        return parsed.kind is RoomKind.AGENT or (
            parsed.kind is RoomKind.GROUP and parsed.arg == change.object_id
        )
    return parsed.kind is RoomKind.TEAM and parsed.arg == change.object_id
