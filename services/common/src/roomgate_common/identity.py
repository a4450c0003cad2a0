"""Who a request stands for: the principal kinds, the id rules and ``Principal``. Pure:
standard library only, no I/O; used by auth (tokens), roomauthz (decisions), the room
grammar (``roomgate_common.rooms``) and the gateway.

Ids. Users, agents, sessions, groups, teams and tasks are named by canonical positive
decimal integers: ASCII digits, no sign, no leading zero, no spaces, value at most
``MAX_ID`` = 2**63 - 1 (a signed 64-bit integer, the database's ``BIGINT``; so at most 19
digits). The text is the id: ``"7"`` and ``"07"`` never name the same thing, ``"07"`` names
nothing. Services are named by a lowercase name (``[a-z][a-z0-9-]{0,62}``).

``Principal`` is the value form of ``roomgate.auth.v1.Principal``: the identity (kind, id,
session, roles, permissions, groups, teams) plus the facts of the token it came from (zero
when it did not come from one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

MAX_ID = 2**63 - 1
"""Largest canonical id (fits a signed 64-bit integer; at most 19 digits)."""
MAX_LIST_ENTRIES = 256
"""At most this many roles, permissions, groups or teams in one principal."""

ID_PATTERN = re.compile(r"[1-9][0-9]{0,18}")
SERVICE_NAME_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,62}")
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
"""A role or permission name."""


class PrincipalKind(StrEnum):
    USER = "user"
    AGENT = "agent"
    SERVICE = "service"


def is_canonical_id(value: object) -> bool:
    """True for "1", "42", "9223372036854775807"; false for "0", "01", "-1", "+1", " 1",
    "١٢", "1e3", "9223372036854775808" and anything that is not a ``str`` (42)."""
    return (
        isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None and int(value) <= MAX_ID
    )


def is_service_name(value: object) -> bool:
    return isinstance(value, str) and SERVICE_NAME_PATTERN.fullmatch(value) is not None


def is_name(value: object) -> bool:
    """True for a role or permission name (``[A-Za-z0-9_.:-]{1,64}``)."""
    return isinstance(value, str) and NAME_PATTERN.fullmatch(value) is not None


def is_valid_principal_id(kind: PrincipalKind, value: object) -> bool:
    """A service's id is a service name; a user's or an agent's a canonical id."""
    if kind is PrincipalKind.SERVICE:
        return is_service_name(value)
    return is_canonical_id(value)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a token stands for, plus the facts of that token (zero when not from a token).

    ``issued_at`` keeps sub-second precision: revoke-all compares it with a time.
    """

    kind: PrincipalKind
    id: str
    session_id: str = ""
    roles: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()
    group_ids: tuple[str, ...] = ()
    team_ids: tuple[str, ...] = ()
    token_id: str = ""
    issued_at: float = 0.0
    expires_at: int = 0

    def problems(self) -> list[str]:
        """What is wrong with this principal's identity (empty when it is valid)."""
        found: list[str] = []
        if not is_valid_principal_id(self.kind, self.id):
            found.append(f"id is not a valid {self.kind.value} id")
        if self.session_id and not is_canonical_id(self.session_id):
            found.append("session_id is not a canonical positive integer")
        for name, values, ok in (
            ("roles", self.roles, is_name),
            ("permissions", self.permissions, is_name),
            ("group_ids", self.group_ids, is_canonical_id),
            ("team_ids", self.team_ids, is_canonical_id),
        ):
            if len(values) > MAX_LIST_ENTRIES:
                found.append(f"more than {MAX_LIST_ENTRIES} {name}")
            elif not all(ok(v) for v in values):
                found.append(f"{name} holds an invalid entry")
        return found
