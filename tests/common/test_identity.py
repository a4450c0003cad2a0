"""Principals and ids (pure): one id rule for tokens and rooms, a principal's problems."""

from __future__ import annotations

from roomgate_common.identity import (
    MAX_ID,
    MAX_LIST_ENTRIES,
    Principal,
    PrincipalKind,
    is_canonical_id,
    is_valid_principal_id,
)
from roomgate_common.rooms import parse_room


def test_the_id_rule_is_the_room_grammars() -> None:
    """An id is canonical exactly when user-{id} is a room: 19 digits up to 2**63 - 1."""
    for value in ["1", "42", str(10**18), str(MAX_ID), str(MAX_ID + 1), "01", "0", "-1", ""]:
        assert is_canonical_id(value) is (parse_room(f"user-{value}") is not None), value
    assert is_canonical_id(str(MAX_ID)) and not is_canonical_id(str(MAX_ID + 1))


def test_service_ids_are_names_and_user_ids_are_numbers() -> None:
    """Services are named by lowercase names, users and agents by canonical ids."""
    assert is_valid_principal_id(PrincipalKind.SERVICE, "alert-manager")
    assert not is_valid_principal_id(PrincipalKind.SERVICE, "42")
    assert not is_valid_principal_id(PrincipalKind.SERVICE, "Alert")
    for kind in (PrincipalKind.USER, PrincipalKind.AGENT):
        assert is_valid_principal_id(kind, "42")
        assert not is_valid_principal_id(kind, "alert-manager")


def test_problems_name_each_invalid_part() -> None:
    """A valid principal has no problems; each invalid part is named once."""
    assert Principal(PrincipalKind.USER, "42", session_id="7", roles=("admin",)).problems() == []
    problems = Principal(
        PrincipalKind.AGENT,
        "x",
        session_id="07",
        roles=("bad role",),
        group_ids=("1",) * (MAX_LIST_ENTRIES + 1),
    ).problems()
    assert problems == [
        "id is not a valid agent id",
        "session_id is not a canonical positive integer",
        "roles holds an invalid entry",
        f"more than {MAX_LIST_ENTRIES} group_ids",
    ]
