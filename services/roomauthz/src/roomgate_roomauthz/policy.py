"""The authorisation decision: may a principal subscribe to / publish into a room? Pure: no
I/O, no Redis, no gRPC; the ACL facts it needs are handed in (see ``Policy.lookups``).

The default policy (``DEFAULT_POLICY``) is documented in docs/authorization.md; a policy
file (``Policy.from_mapping`` on its parsed YAML/JSON) replaces parts of it.

Subscribe: each room kind has a list of checks; any passing check allows. When all fail the
reason is the first check's reason (an empty list denies with ``denied_by_policy``).

    permission  the principal has the named permission            -> missing_permission
    agent_group agent-{id}: the agent is in one of the viewer's groups -> not_in_agent_group
    owner       agent-{id}/user-{id}: the principal is that agent/user;
                session-{id}: the principal's session id is id     -> not_owner
    member      group-{id}/team-{id}: the principal is a member    -> not_member
    role        role-{name}: the principal has that role           -> missing_role

Publish: an ordered list of rules (principal kinds x room kinds x message types, plus an
optional permission, ``own`` room and ``readable`` = subscribe check); the first rule that
passes allows. Denial reasons, in order of evaluation: ``missing_message_type`` (empty type),
``publish_not_allowed`` (no rule for this principal kind and room kind),
``type_not_allowed`` (no such rule for this message type), else the first failing check of
the first rule that lists the type (``missing_permission``, ``not_owner``, or the subscribe
reason for ``readable``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from roomgate_common.aclevents import Relation
from roomgate_common.identity import Principal, PrincipalKind, is_canonical_id
from roomgate_common.rooms import Room, RoomKind, parse_room

from roomgate_roomauthz.errors import PolicyError

PUBLISH_PERMISSION = "publish"
"""The permission that lets a service principal (a backend) publish into any known room."""


class Action(enum.Enum):
    SUBSCRIBE = "subscribe"
    PUBLISH = "publish"


class Reason:
    """The machine-readable reasons of a decision (the proto comment of Decision.reason)."""

    ALLOWED = "allowed"
    UNKNOWN_ROOM = "unknown_room"
    MISSING_PERMISSION = "missing_permission"
    NOT_MEMBER = "not_member"
    NOT_OWNER = "not_owner"
    MISSING_ROLE = "missing_role"
    NOT_IN_AGENT_GROUP = "not_in_agent_group"
    TYPE_NOT_ALLOWED = "type_not_allowed"
    INVALID_ACTION = "invalid_action"
    MISSING_MESSAGE_TYPE = "missing_message_type"
    PUBLISH_NOT_ALLOWED = "publish_not_allowed"
    DENIED_BY_POLICY = "denied_by_policy"

    ALL: tuple[str, ...] = (
        ALLOWED,
        UNKNOWN_ROOM,
        MISSING_PERMISSION,
        NOT_MEMBER,
        NOT_OWNER,
        MISSING_ROLE,
        NOT_IN_AGENT_GROUP,
        TYPE_NOT_ALLOWED,
        INVALID_ACTION,
        MISSING_MESSAGE_TYPE,
        PUBLISH_NOT_ALLOWED,
        DENIED_BY_POLICY,
    )


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str


ALLOW = Decision(True, Reason.ALLOWED)

Lookup = tuple[Relation, str]
"""One ACL read: (relation, subject id) -> the set of object ids."""

AclFacts = Mapping[Lookup, frozenset[str]]
"""The answers to the lookups ``Policy.lookups`` asked for (missing means empty)."""

NO_FACTS: AclFacts = {}

_NONE: frozenset[str] = frozenset()


class CheckKind(enum.Enum):
    PERMISSION = "permission"
    AGENT_GROUP = "agent_group"
    OWNER = "owner"
    MEMBER = "member"
    ROLE = "role"


# Which room kinds each check means something for (a policy file may not use it elsewhere).
_CHECK_KINDS: dict[CheckKind, frozenset[RoomKind]] = {
    CheckKind.PERMISSION: frozenset(RoomKind),
    CheckKind.AGENT_GROUP: frozenset({RoomKind.AGENT}),
    CheckKind.OWNER: frozenset({RoomKind.AGENT, RoomKind.USER, RoomKind.SESSION}),
    CheckKind.MEMBER: frozenset({RoomKind.GROUP, RoomKind.TEAM}),
    CheckKind.ROLE: frozenset({RoomKind.ROLE}),
}

_CHECK_REASONS: dict[CheckKind, str] = {
    CheckKind.PERMISSION: Reason.MISSING_PERMISSION,
    CheckKind.AGENT_GROUP: Reason.NOT_IN_AGENT_GROUP,
    CheckKind.OWNER: Reason.NOT_OWNER,
    CheckKind.MEMBER: Reason.NOT_MEMBER,
    CheckKind.ROLE: Reason.MISSING_ROLE,
}


@dataclass(frozen=True, slots=True)
class Check:
    kind: CheckKind
    permission: str = ""


def _perm(name: str) -> tuple[Check, ...]:
    return (Check(CheckKind.PERMISSION, name),)


@dataclass(frozen=True, slots=True)
class PublishRule:
    principals: frozenset[PrincipalKind]
    rooms: frozenset[RoomKind]
    types: frozenset[str] | None  # None: any message type
    permission: str = ""
    own: bool = False  # the room must be the principal's own (agent-{id}, user-{id}, ...)
    readable: bool = False  # the principal must also pass the room's subscribe check


AGENT_STATUS_TYPES = frozenset({"agent_status", "agent_updated"})
TASK_REPORT_TYPES = frozenset({"task_started", "task_progress", "task_completed", "task_failed"})

DEFAULT_SUBSCRIBE: Mapping[RoomKind, tuple[Check, ...]] = MappingProxyType(
    {
        RoomKind.SYSTEM: _perm("view_system"),
        RoomKind.ALERTS: _perm("view_system"),
        RoomKind.MAINTENANCE: _perm("view_system"),
        RoomKind.AGENTS: _perm("view_agents"),
        RoomKind.AGENT: (
            Check(CheckKind.AGENT_GROUP),
            Check(CheckKind.OWNER),
            Check(CheckKind.PERMISSION, "view_all_agents"),
        ),
        RoomKind.TASKS: _perm("view_tasks"),
        RoomKind.TASK: _perm("view_tasks"),
        RoomKind.GROUP: (Check(CheckKind.MEMBER),),
        RoomKind.TEAM: (Check(CheckKind.MEMBER),),
        RoomKind.ROLE: (Check(CheckKind.ROLE),),
        RoomKind.USER: (Check(CheckKind.OWNER),),
        RoomKind.SESSION: (Check(CheckKind.OWNER),),
    }
)

DEFAULT_PUBLISH: tuple[PublishRule, ...] = (
    PublishRule(
        principals=frozenset({PrincipalKind.SERVICE}),
        rooms=frozenset(RoomKind),
        types=None,
        permission=PUBLISH_PERMISSION,
    ),
    PublishRule(
        principals=frozenset({PrincipalKind.AGENT}),
        rooms=frozenset({RoomKind.AGENTS}),
        types=AGENT_STATUS_TYPES,
    ),
    PublishRule(
        principals=frozenset({PrincipalKind.AGENT}),
        rooms=frozenset({RoomKind.AGENT}),
        types=AGENT_STATUS_TYPES,
        own=True,
    ),
    PublishRule(
        principals=frozenset({PrincipalKind.AGENT}),
        rooms=frozenset({RoomKind.TASKS, RoomKind.TASK}),
        types=TASK_REPORT_TYPES,
        permission="report_tasks",
    ),
    PublishRule(
        principals=frozenset({PrincipalKind.USER}),
        rooms=frozenset({RoomKind.ALERTS}),
        types=frozenset({"alert_acknowledged"}),
        permission="ack_alerts",
        readable=True,
    ),
    PublishRule(
        principals=frozenset({PrincipalKind.USER}),
        rooms=frozenset({RoomKind.ALERTS}),
        types=frozenset({"alert_resolved"}),
        permission="resolve_alerts",
        readable=True,
    ),
)


def viewer_groups(principal: Principal, facts: AclFacts) -> frozenset[str]:
    """Groups whose agents the principal may watch: token groups, plus the ACL user<->group
    entries of a user. (An agent's own ACL groups make it a member of group-{id}, not a
    viewer of the other agents of that group.)"""
    if principal.kind is PrincipalKind.USER:
        return facts.get((Relation.USER_GROUP, principal.id), _NONE).union(principal.group_ids)
    return frozenset(principal.group_ids)


def member_groups(principal: Principal, facts: AclFacts) -> frozenset[str]:
    """Groups the principal belongs to: token groups, plus ACL user<->group (users) or
    agent<->group (agents)."""
    if principal.kind is PrincipalKind.USER:
        return facts.get((Relation.USER_GROUP, principal.id), _NONE).union(principal.group_ids)
    if principal.kind is PrincipalKind.AGENT:
        return facts.get((Relation.AGENT_GROUP, principal.id), _NONE).union(principal.group_ids)
    return frozenset(principal.group_ids)


def member_teams(principal: Principal, facts: AclFacts) -> frozenset[str]:
    """Teams the principal belongs to: token teams, plus ACL user<->team (users)."""
    if principal.kind is PrincipalKind.USER:
        return facts.get((Relation.USER_TEAM, principal.id), _NONE).union(principal.team_ids)
    return frozenset(principal.team_ids)


def owns(principal: Principal, room: Room) -> bool:
    """agent-{id}/user-{id}: the principal is that agent/user; session-{id}: its session."""
    if room.kind is RoomKind.AGENT:
        return principal.kind is PrincipalKind.AGENT and principal.id == room.arg
    if room.kind is RoomKind.USER:
        return principal.kind is PrincipalKind.USER and principal.id == room.arg
    if room.kind is RoomKind.SESSION:
        return principal.session_id == room.arg
    return False


def _passes(check: Check, principal: Principal, room: Room, facts: AclFacts) -> bool:
    kind = check.kind
    if kind is CheckKind.PERMISSION:
        return check.permission in principal.permissions
    if kind is CheckKind.OWNER:
        return owns(principal, room)
    if kind is CheckKind.ROLE:
        return room.kind is RoomKind.ROLE and room.arg in principal.roles
    if kind is CheckKind.MEMBER:
        if room.kind is RoomKind.GROUP:
            return room.arg in member_groups(principal, facts)
        if room.kind is RoomKind.TEAM:
            return room.arg in member_teams(principal, facts)
        return False
    if kind is CheckKind.AGENT_GROUP:
        if room.kind is not RoomKind.AGENT:
            return False
        agent_groups = facts.get((Relation.AGENT_GROUP, room.arg), frozenset())
        return not agent_groups.isdisjoint(viewer_groups(principal, facts))
    return False  # pragma: no cover - every CheckKind is handled above


def _check_lookups(check: Check, principal: Principal, room: Room) -> set[Lookup]:
    if not is_canonical_id(principal.id):
        subject_lookups = False
    else:
        subject_lookups = principal.kind is not PrincipalKind.SERVICE
    found: set[Lookup] = set()
    if check.kind is CheckKind.AGENT_GROUP and room.kind is RoomKind.AGENT:
        found.add((Relation.AGENT_GROUP, room.arg))
        if subject_lookups and principal.kind is PrincipalKind.USER:
            found.add((Relation.USER_GROUP, principal.id))
    elif check.kind is CheckKind.MEMBER and subject_lookups:
        if room.kind is RoomKind.GROUP:
            relation = (
                Relation.USER_GROUP
                if principal.kind is PrincipalKind.USER
                else Relation.AGENT_GROUP
            )
            found.add((relation, principal.id))
        elif room.kind is RoomKind.TEAM and principal.kind is PrincipalKind.USER:
            found.add((Relation.USER_TEAM, principal.id))
    return found


@dataclass(frozen=True)
class Policy:
    """Subscribe checks per room kind and the ordered publish rules."""

    subscribe: Mapping[RoomKind, tuple[Check, ...]] = field(
        default_factory=lambda: dict(DEFAULT_SUBSCRIBE)
    )
    publish: tuple[PublishRule, ...] = DEFAULT_PUBLISH

    # --- building ---------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, data: Any) -> Policy:
        """The default policy with the parts ``data`` (a parsed policy file) replaces.

        ``{"subscribe": {<room kind>: [<check>, ...]}, "publish": [<rule>, ...]}``: each
        room kind listed under ``subscribe`` gets exactly the given checks; ``publish``,
        when present, replaces every default publish rule. Raises ``PolicyError``.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise PolicyError("policy: expected a mapping with 'subscribe' and/or 'publish'")
        unknown = set(data) - {"subscribe", "publish"}
        if unknown:
            raise PolicyError(f"policy: unknown keys {sorted(map(str, unknown))}")
        subscribe = dict(DEFAULT_SUBSCRIBE)
        raw_subscribe = data.get("subscribe") or {}
        if not isinstance(raw_subscribe, Mapping):
            raise PolicyError("policy.subscribe: expected a mapping of room kind -> checks")
        for kind_name, checks in raw_subscribe.items():
            kind = _room_kind(kind_name, f"policy.subscribe.{kind_name}")
            subscribe[kind] = _parse_checks(kind, checks, f"policy.subscribe.{kind_name}")
        publish = DEFAULT_PUBLISH
        if "publish" in data:
            rules = data["publish"]
            if not isinstance(rules, list):
                raise PolicyError("policy.publish: expected a list of rules")
            publish = tuple(_parse_rule(r, f"policy.publish[{i}]") for i, r in enumerate(rules))
        return cls(subscribe=subscribe, publish=publish)

    # --- deciding ---------------------------------------------------------------------

    def lookups(
        self, principal: Principal, room: str, action: Action | None, message_type: str = ""
    ) -> set[Lookup]:
        """The ACL reads ``decide`` may need for this question (empty for most rooms)."""
        parsed = parse_room(room)
        if parsed is None or action is None:
            return set()
        checks: tuple[Check, ...] = ()
        if action is Action.SUBSCRIBE or any(
            rule.readable and principal.kind in rule.principals and parsed.kind in rule.rooms
            for rule in self.publish
        ):
            checks = self.subscribe.get(parsed.kind, ())
        found: set[Lookup] = set()
        for check in checks:
            found |= _check_lookups(check, principal, parsed)
        return found

    def decide(
        self,
        principal: Principal,
        room: str,
        action: Action | None,
        message_type: str = "",
        facts: AclFacts = NO_FACTS,
    ) -> Decision:
        """The decision for ``principal`` doing ``action`` on ``room`` (``None``: unknown
        action). ``facts`` holds the answers to ``lookups``."""
        if action is None:
            return Decision(False, Reason.INVALID_ACTION)
        parsed = parse_room(room)
        if parsed is None:
            return Decision(False, Reason.UNKNOWN_ROOM)
        if action is Action.SUBSCRIBE:
            return self._subscribe(principal, parsed, facts)
        return self._publish(principal, parsed, message_type, facts)

    def _subscribe(self, principal: Principal, room: Room, facts: AclFacts) -> Decision:
        checks = self.subscribe.get(room.kind, ())
        if not checks:
            return Decision(False, Reason.DENIED_BY_POLICY)
        for check in checks:
            if _passes(check, principal, room, facts):
                return ALLOW
        return Decision(False, _CHECK_REASONS[checks[0].kind])

    def _publish(
        self, principal: Principal, room: Room, message_type: str, facts: AclFacts
    ) -> Decision:
        if not message_type:
            return Decision(False, Reason.MISSING_MESSAGE_TYPE)
        candidates = [
            r for r in self.publish if principal.kind in r.principals and room.kind in r.rooms
        ]
        if not candidates:
            return Decision(False, Reason.PUBLISH_NOT_ALLOWED)
        typed = [r for r in candidates if r.types is None or message_type in r.types]
        if not typed:
            return Decision(False, Reason.TYPE_NOT_ALLOWED)
        first: Decision | None = None
        for rule in typed:
            denial = self._rule_denial(rule, principal, room, facts)
            if denial is None:
                return ALLOW
            first = first or denial
        assert first is not None
        return first

    def _rule_denial(
        self, rule: PublishRule, principal: Principal, room: Room, facts: AclFacts
    ) -> Decision | None:
        if rule.permission and rule.permission not in principal.permissions:
            return Decision(False, Reason.MISSING_PERMISSION)
        if rule.own and not owns(principal, room):
            return Decision(False, Reason.NOT_OWNER)
        if rule.readable:
            readable = self._subscribe(principal, room, facts)
            if not readable.allowed:
                return readable
        return None


DEFAULT_POLICY = Policy()


# --- policy file parsing -----------------------------------------------------------------


def _room_kind(name: object, where: str) -> RoomKind:
    try:
        return RoomKind(name)
    except ValueError:
        known = ", ".join(k.value for k in RoomKind)
        raise PolicyError(f"{where}: unknown room kind {name!r} (known: {known})") from None


def _parse_checks(kind: RoomKind, raw: object, where: str) -> tuple[Check, ...]:
    if not isinstance(raw, list):
        raise PolicyError(f"{where}: expected a list of checks (an empty list denies)")
    checks: list[Check] = []
    for i, item in enumerate(raw):
        here = f"{where}[{i}]"
        if isinstance(item, str):
            try:
                check_kind = CheckKind(item)
            except ValueError:
                raise PolicyError(f"{here}: unknown check {item!r}") from None
            if check_kind is CheckKind.PERMISSION:
                raise PolicyError(f"{here}: write a permission check as {{permission: NAME}}")
            check = Check(check_kind)
        elif isinstance(item, Mapping) and set(item) == {"permission"}:
            name = item["permission"]
            if not isinstance(name, str) or not name:
                raise PolicyError(f"{here}: permission must be a non-empty string")
            check = Check(CheckKind.PERMISSION, name)
        else:
            raise PolicyError(f"{here}: expected a check name or {{permission: NAME}}")
        if kind not in _CHECK_KINDS[check.kind]:
            raise PolicyError(f"{here}: check {check.kind.value!r} does not apply to {kind.value}")
        checks.append(check)
    return tuple(checks)


_RULE_KEYS = {"principals", "rooms", "types", "permission", "own", "readable"}


def _string_list(raw: object, where: str) -> list[str]:
    if not isinstance(raw, list) or not raw or not all(isinstance(x, str) and x for x in raw):
        raise PolicyError(f"{where}: expected a non-empty list of strings")
    return list(raw)


def _parse_rule(raw: object, where: str) -> PublishRule:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: expected a mapping")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown keys {sorted(map(str, unknown))}")
    for key in ("principals", "rooms", "types"):
        if key not in raw:
            raise PolicyError(f"{where}: '{key}' is required")
    principals: set[PrincipalKind] = set()
    for name in _string_list(raw["principals"], f"{where}.principals"):
        try:
            principals.add(PrincipalKind(name))
        except ValueError:
            raise PolicyError(f"{where}.principals: unknown principal kind {name!r}") from None
    room_names = _string_list(raw["rooms"], f"{where}.rooms")
    rooms = (
        frozenset(RoomKind)
        if room_names == ["*"]
        else frozenset(_room_kind(n, f"{where}.rooms") for n in room_names)
    )
    type_names = _string_list(raw["types"], f"{where}.types")
    types = None if type_names == ["*"] else frozenset(type_names)
    permission = raw.get("permission", "")
    if not isinstance(permission, str):
        raise PolicyError(f"{where}.permission: expected a string")
    flags = {}
    for key in ("own", "readable"):
        value = raw.get(key, False)
        if not isinstance(value, bool):
            raise PolicyError(f"{where}.{key}: expected true or false")
        flags[key] = value
    if flags["own"] and not rooms <= _CHECK_KINDS[CheckKind.OWNER]:
        raise PolicyError(f"{where}.own: only agent, user and session rooms have an owner")
    return PublishRule(
        principals=frozenset(principals),
        rooms=rooms,
        types=types,
        permission=permission,
        own=flags["own"],
        readable=flags["readable"],
    )


def principal_from_parts(
    kind: PrincipalKind,
    id: str,
    *,
    session_id: str = "",
    roles: Iterable[str] = (),
    permissions: Iterable[str] = (),
    group_ids: Iterable[str] = (),
    team_ids: Iterable[str] = (),
) -> Principal:
    """A ``Principal`` from plain values (any iterables)."""
    return Principal(
        kind=kind,
        id=id,
        session_id=session_id,
        roles=tuple(roles),
        permissions=tuple(permissions),
        group_ids=tuple(group_ids),
        team_ids=tuple(team_ids),
    )
