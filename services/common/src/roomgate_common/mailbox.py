"""Offline mailboxes: messages for ``user-{id}`` wait, per user, until one of the user's
clients acknowledges them (``ack``), their ``ttl`` passes, or the mailbox overflows
(``MAILBOX_CAP`` messages; the oldest ``low``-priority message goes first, then the oldest).

The publish script (roomgate_common.publisher) files every message of a ``user-{id}`` room;
gateways file a ``requiresAck`` message of any other room for each user connection it is
delivered to, so it survives a reconnect. Every key of a user's mailbox shares the user
room's hash tag (one Redis Cluster slot), so each change is one atomic script.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from roomgate_common.rooms import RoomKind, parse_room

DEFAULT_MAILBOX_CAP = 1000
DEFAULT_MAILBOX_TTL = 7 * 86400  # seconds an untouched mailbox is kept

# A Lua function shared by FILE_SCRIPT and the publish script: files one message and
# evicts to the cap (oldest low first, then oldest). Returns how many were evicted.
EVICTED_FIELD = "_evicted"
"""Field of the messages hash counting evictions since the user last connected."""

SEQUENCE_FIELD = "_seq"
"""Field of the messages hash holding the mailbox's arrival sequence (the sorted set's score)."""

FILE_FUNCTION = f"""
local EVICTED_FIELD = '{EVICTED_FIELD}'
local SEQUENCE_FIELD = '{SEQUENCE_FIELD}'
local function file_in_mailbox(box, msgs, low, id, payload, priority, cap, ttl_ms, score)
  if score == '' then
    -- Arrival order: a per-mailbox sequence (two messages in one millisecond stay ordered).
    score = redis.call('HINCRBY', msgs, SEQUENCE_FIELD, 1)
  end
  redis.call('ZADD', box, score, id)
  redis.call('HSET', msgs, id, payload)
  if priority == 'low' then redis.call('ZADD', low, score, id) end
  local evicted = 0
  while redis.call('ZCARD', box) > tonumber(cap) do
    local victim = redis.call('ZRANGE', low, 0, 0)[1] or redis.call('ZRANGE', box, 0, 0)[1]
    redis.call('ZREM', box, victim)
    redis.call('ZREM', low, victim)
    redis.call('HDEL', msgs, victim)
    evicted = evicted + 1
  end
  if evicted > 0 then redis.call('HINCRBY', msgs, EVICTED_FIELD, evicted) end
  redis.call('PEXPIRE', box, ttl_ms)
  redis.call('PEXPIRE', msgs, ttl_ms)
  redis.call('PEXPIRE', low, ttl_ms)
  return evicted
end
"""

# KEYS: mailbox, messages, low. ARGV: id, bus payload, priority, cap, ttl ms, score ('' =
# next in arrival order).
FILE_SCRIPT = (
    FILE_FUNCTION
    + """
return file_in_mailbox(KEYS[1], KEYS[2], KEYS[3],
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
"""
)

# KEYS: mailbox, messages, low. ARGV: ids to remove.
REMOVE_SCRIPT = """
local removed = 0
for _, id in ipairs(ARGV) do
  removed = removed + redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[2], id)
end
return removed
"""


def is_durable(room: str, patterns: str) -> bool:
    """Does ``room`` match one of the comma-separated durable-room patterns?"""
    return any(fnmatchcase(room, p.strip()) for p in patterns.split(",") if p.strip())


def mailbox_user(room: str) -> str | None:
    """The user whose mailbox keeps this room's messages (``user-{id}`` rooms)."""
    parsed = parse_room(room)
    return parsed.arg if parsed is not None and parsed.kind is RoomKind.USER else None
