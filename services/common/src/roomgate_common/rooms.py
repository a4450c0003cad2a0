"""The room grammar of the Roomgate protocol, parsed strictly. Pure: standard library only,
no I/O, used by roomauthz (decisions), escalation (targets) and the mailbox rules.

Grammar (a room name is ASCII, at most ``MAX_ROOM_BYTES`` bytes, exact case)::

    room      = global / entity / group / user
    global    = "system" / "alerts" / "maintenance" / "agents" / "tasks"
    entity    = "agent-" id / "task-" id
    group     = "group-" id / "team-" id / "role-" role-name
    user      = "user-" id / "session-" id
    id        = canonical positive decimal integer: [1-9][0-9]{0,18}, value < 2**63
                (``roomgate_common.identity.is_canonical_id``)
    role-name = [a-z][a-z0-9_]{0,62}

Anything else (``agent-01``, ``agent--1``, ``agent-+1``, non-ASCII digits, ``Agents``,
``agent-1/../x``, whitespace, NUL, percent-encoding, too long) is not a room:
``parse_room`` returns ``None`` and the policy answers ``unknown_room``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from roomgate_common.identity import is_canonical_id

MAX_ROOM_BYTES = 128
"""Longest room name accepted (bytes; a valid name is ASCII so bytes == characters)."""

ROLE_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,62}")


class RoomKind(enum.Enum):
    """The kinds of room; the value is the name used in policy files and docs."""

    SYSTEM = "system"
    ALERTS = "alerts"
    MAINTENANCE = "maintenance"
    AGENTS = "agents"
    TASKS = "tasks"
    AGENT = "agent"
    TASK = "task"
    GROUP = "group"
    TEAM = "team"
    ROLE = "role"
    USER = "user"
    SESSION = "session"


GLOBAL_KINDS: frozenset[RoomKind] = frozenset(
    {RoomKind.SYSTEM, RoomKind.ALERTS, RoomKind.MAINTENANCE, RoomKind.AGENTS, RoomKind.TASKS}
)
"""Kinds with exactly one room, named like the kind."""

ID_KINDS: frozenset[RoomKind] = frozenset(
    {
        RoomKind.AGENT,
        RoomKind.TASK,
        RoomKind.GROUP,
        RoomKind.TEAM,
        RoomKind.USER,
        RoomKind.SESSION,
    }
)
"""Kinds named ``<kind>-<id>``."""

_BY_NAME = {kind.value: kind for kind in RoomKind}


@dataclass(frozen=True, slots=True)
class Room:
    """A parsed room. ``arg`` is the canonical id or role name ('' for global rooms)."""

    kind: RoomKind
    arg: str = ""

    @property
    def name(self) -> str:
        return self.kind.value if not self.arg else f"{self.kind.value}-{self.arg}"

    def __str__(self) -> str:
        return self.name


def is_role_name(value: str) -> bool:
    """True for a role name of the room grammar (``[a-z][a-z0-9_]{0,62}``)."""
    return isinstance(value, str) and ROLE_PATTERN.fullmatch(value) is not None


def parse_room(name: str) -> Room | None:
    """The room ``name`` denotes, or ``None`` when it is not exactly a room of the grammar."""
    if not isinstance(name, str) or not name.isascii() or len(name) > MAX_ROOM_BYTES:
        return None
    kind = _BY_NAME.get(name)
    if kind is not None:
        return Room(kind) if kind in GLOBAL_KINDS else None
    prefix, sep, arg = name.partition("-")
    if not sep:
        return None
    kind = _BY_NAME.get(prefix)
    if kind is None:
        return None
    if kind in ID_KINDS:
        return Room(kind, arg) if is_canonical_id(arg) else None
    if kind is RoomKind.ROLE:
        return Room(kind, arg) if is_role_name(arg) else None
    return None


def room_name(kind: RoomKind, arg: str = "") -> str:
    """The canonical name of a room (``room_name(RoomKind.AGENT, "7") == "agent-7"``).

    Raises ``ValueError`` when the result would not parse back to the same room.
    """
    name = kind.value if not arg else f"{kind.value}-{arg}"
    if parse_room(name) != Room(kind, arg):
        raise ValueError(f"not a valid room: {name!r}")
    return name
