"""The room grammar (pure): every kind parses, hostile names do not."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from roomgate_common.identity import MAX_ID, is_canonical_id
from roomgate_common.rooms import (
    MAX_ROOM_BYTES,
    Room,
    RoomKind,
    parse_room,
    room_name,
)

VALID = [
    ("system", Room(RoomKind.SYSTEM)),
    ("alerts", Room(RoomKind.ALERTS)),
    ("maintenance", Room(RoomKind.MAINTENANCE)),
    ("agents", Room(RoomKind.AGENTS)),
    ("tasks", Room(RoomKind.TASKS)),
    ("agent-7", Room(RoomKind.AGENT, "7")),
    ("task-456", Room(RoomKind.TASK, "456")),
    ("group-3", Room(RoomKind.GROUP, "3")),
    ("team-5", Room(RoomKind.TEAM, "5")),
    ("role-admin", Room(RoomKind.ROLE, "admin")),
    ("role-ops_2", Room(RoomKind.ROLE, "ops_2")),
    ("user-42", Room(RoomKind.USER, "42")),
    ("session-9", Room(RoomKind.SESSION, "9")),
    (f"agent-{MAX_ID}", Room(RoomKind.AGENT, str(MAX_ID))),
    ("role-" + "a" * 63, Room(RoomKind.ROLE, "a" * 63)),
]

HOSTILE = [
    "",
    "agent",
    "agent-",
    "agent-0",
    "agent-01",
    "agent--1",
    "agent-+1",
    "agent-1.0",
    "agent-1e3",
    "agent-0x1f",
    "agent-\u0661",  # Arabic-Indic digit one
    "agent-\uff11",  # fullwidth digit one
    "agent-1\u0661",
    "agent-\u00b9",  # superscript one
    "agent- 1",
    "agent-1 ",
    " agent-1",
    "agent-1\n",
    "agent-1\t",
    "agent-1\x00",
    "agent-1/../x",
    "agent-1/..",
    "agent-%31",
    "agent-1%2F",
    "%2Fagent-1",
    "agent-1_000",
    "agent_1",
    "agent:1",
    "Agents",
    "AGENTS",
    "System",
    "agent-7-8",
    "Agent-7",
    "group-",
    "group-a",
    "team--5",
    "user-42a",
    "session-",
    "task-00",
    f"agent-{MAX_ID + 1}",
    "agent-" + "9" * 20,
    "role-",
    "role-Admin",
    "role-1admin",
    "role-_admin",
    "role-ad-min",
    "role-ad min",
    "role-" + "a" * 64,
    "role-\u0430dmin",  # Cyrillic a
    "systems",
    "system ",
    "sys\u200btem",  # zero-width space
    "alerts\x00",
    "tasks/",
    "rooms",
    "x" * (MAX_ROOM_BYTES + 1),
    "agent-1" + "0" * MAX_ROOM_BYTES,
    "maintenance-1",
    "agents-1",
    "system-1",
]


@pytest.mark.parametrize(("name", "room"), VALID)
def test_valid_rooms_parse(name: str, room: Room) -> None:
    """Every room kind of the protocol parses to its kind and canonical argument."""
    assert parse_room(name) == room
    assert room.name == name


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_not_rooms(name: str) -> None:
    """Non-canonical ids, other scripts, separators, case variants and long names are refused."""
    assert parse_room(name) is None


def test_non_strings_are_not_rooms() -> None:
    """A value that is not a str is not a room (no exception)."""
    assert parse_room(7) is None  # type: ignore[arg-type]
    assert parse_room(b"agents") is None  # type: ignore[arg-type]


def test_room_name_builds_and_refuses() -> None:
    """room_name builds canonical names and refuses arguments the grammar rejects."""
    assert room_name(RoomKind.AGENT, "7") == "agent-7"
    assert room_name(RoomKind.SYSTEM) == "system"
    with pytest.raises(ValueError, match="not a valid room"):
        room_name(RoomKind.AGENT, "07")
    with pytest.raises(ValueError, match="not a valid room"):
        room_name(RoomKind.SYSTEM, "1")


ID_KINDS = [RoomKind.AGENT, RoomKind.TASK, RoomKind.GROUP, RoomKind.TEAM, RoomKind.USER]


@settings(deadline=None)  # no per-example deadline: the CI machine is shared
@given(st.integers(min_value=1, max_value=MAX_ID), st.sampled_from([*ID_KINDS, RoomKind.SESSION]))
def test_canonical_ids_round_trip(value: int, kind: RoomKind) -> None:
    """Every positive integer below 2**63 in canonical form is a room id of every id kind."""
    name = f"{kind.value}-{value}"
    parsed = parse_room(name)
    assert parsed == Room(kind, str(value))
    assert parsed is not None
    assert parsed.name == name
    assert is_canonical_id(str(value))


@settings(deadline=None)  # no per-example deadline: the CI machine is shared
@given(st.text(max_size=40), st.sampled_from([*ID_KINDS, RoomKind.SESSION]))
def test_anything_but_a_canonical_id_is_refused(arg: str, kind: RoomKind) -> None:
    """An id argument parses only when it is exactly the canonical decimal form."""
    parsed = parse_room(f"{kind.value}-{arg}")
    canonical = arg.isascii() and arg.isdigit() and str(int(arg)) == arg and 0 < int(arg) <= MAX_ID
    assert (parsed is not None) == canonical


@settings(deadline=None)  # no per-example deadline: the CI machine is shared
@given(st.text(max_size=200))
def test_arbitrary_text_parses_only_to_itself(text: str) -> None:
    """Whatever parses names exactly itself (no normalisation, no aliasing)."""
    parsed = parse_room(text)
    if parsed is not None:
        assert parsed.name == text
        assert text.isascii()
        assert len(text) <= MAX_ROOM_BYTES
