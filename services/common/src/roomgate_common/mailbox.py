"""Offline mailboxes: messages for ``user-{id}`` wait, per user, until one of the user's
clients acknowledges them (``ack``), their ``ttl`` passes, or the mailbox overflows
(``MAILBOX_CAP`` messages; the oldest ``low``-priority message goes first, then the oldest).

The publish script (roomgate_common.publisher) files every message of a ``user-{id}`` room;
gateways file a ``requiresAck`` message of any other room for each user connection it is
delivered to, so it survives a reconnect. Every key of a user's mailbox shares the user
room's hash tag (one Redis Cluster slot), so each change is one atomic script (the
``mailbox_*.lua`` files beside this module).
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from roomgate_common.lua import load_lua
from roomgate_common.rooms import RoomKind, parse_room

DEFAULT_MAILBOX_CAP = 1000
DEFAULT_MAILBOX_TTL = 7 * 86400  # seconds an untouched mailbox is kept

EVICTED_FIELD = "_evicted"
"""Field of the messages hash counting evictions since the user last connected."""

SEQUENCE_FIELD = "_seq"
"""Field of the messages hash holding the mailbox's arrival sequence (the sorted set's score)."""

FILE_FUNCTION = load_lua(
    __package__,
    "mailbox_function.lua",
    EVICTED_FIELD=EVICTED_FIELD,
    SEQUENCE_FIELD=SEQUENCE_FIELD,
)
"""The Lua function ``file_in_mailbox`` shared by FILE_SCRIPT and the publish script: files
one message and evicts to the cap (oldest low first, then oldest)."""

FILE_SCRIPT = FILE_FUNCTION + load_lua(__package__, "mailbox_file.lua")
"""Files one message (mailbox_file.lua says its KEYS and ARGV)."""

REMOVE_SCRIPT = load_lua(__package__, "mailbox_remove.lua")
"""Removes acknowledged messages (mailbox_remove.lua)."""


def is_durable(room: str, patterns: str) -> bool:
    """Does ``room`` match one of the comma-separated durable-room patterns?"""
    return any(fnmatchcase(room, p.strip()) for p in patterns.split(",") if p.strip())


def mailbox_user(room: str) -> str | None:
    """The user whose mailbox keeps this room's messages (``user-{id}`` rooms)."""
    parsed = parse_room(room)
    return parsed.arg if parsed is not None and parsed.kind is RoomKind.USER else None
