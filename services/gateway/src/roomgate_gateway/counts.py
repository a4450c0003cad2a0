"""Cluster-wide connection counts (per IP, per principal) and per-minute rates (connects and
messages per principal) in Redis.

Each count is a hash with one field per gateway (``keys.conn_count_*``); the gateway
remembers the hashes it has a field in (``keys.gateway_count_keys``) so that the others can
forget its counts if it dies. A field is deleted when its count reaches zero, and the hash
leaves the gateway's set with it: neither grows with every IP and principal ever seen.

The gateway keeps its own reference count per hash (``refs``), changed before any Redis
call: the set entry is removed when the last local connection leaves a hash, never while
another local connection is being counted there.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from roomgate_common import keys
from roomgate_common.redis_adapter import CONNECTION_ERRORS, Redis, is_cluster

# Count one connection in a cluster-wide hash (field per gateway) unless the total is at
# the limit. One key per script: it works in a Redis Cluster (IP and user hashes live on
# different shards).
COUNT_SCRIPT = """
local sum = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do sum = sum + tonumber(v) end
if sum >= tonumber(ARGV[2]) then return 1 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 0
"""

# Returns 1 when this gateway's field is gone (its count reached zero).
UNCOUNT_SCRIPT = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


# A connect, in one round trip (a single Redis server): one more connect of the principal in
# this minute (KEYS[1]) unless beyond ARGV[2] (-1); each count hash (KEYS[2..n-1]) below
# its limit (ARGV[3..]) or the index of the first at it (0-based); then counted in every
# hash and the hashes remembered in the gateway's set (KEYS[n]): -2.
ADMIT_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], 120) end
if n > tonumber(ARGV[2]) then return -1 end
local last = #KEYS - 1
for i = 2, last do
  local sum = 0
  for _, v in ipairs(redis.call('HVALS', KEYS[i])) do sum = sum + tonumber(v) end
  if sum >= tonumber(ARGV[i + 1]) then return i - 2 end
end
for i = 2, last do
  redis.call('HINCRBY', KEYS[i], ARGV[1], 1)
  redis.call('SADD', KEYS[#KEYS], KEYS[i])
end
return -2
"""

RATE_REFUSED = -1

# One more event (a connect, a message) of a principal in this window; the count so far.
RATE_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


class ConnectionCounts:
    """This gateway's share of the cluster-wide connection counts (raises redis errors:
    callers translate them)."""

    def __init__(self, redis: Redis, gateway_id: str) -> None:
        self._redis = redis
        self._gid = gateway_id
        self._set = keys.gateway_count_keys(gateway_id)
        self._count = redis.register_script(COUNT_SCRIPT)
        self._uncount = redis.register_script(UNCOUNT_SCRIPT)
        self._rate = redis.register_script(RATE_SCRIPT)
        self._admit = redis.register_script(ADMIT_SCRIPT)
        self._single = not is_cluster(redis)
        self.refs: dict[str, int] = {}
        # The wall clock that places a rate in its calendar minute (tests freeze it).
        self.clock: Callable[[], float] = time.time

    async def admit(
        self, principal: str, per_minute: int, limited: list[tuple[str, int]]
    ) -> int | None:
        """One connect of ``principal`` (``kind:id``): counted in its connect rate, then in
        each ``(key, limit)`` as ``count`` does. None when admitted; ``RATE_REFUSED`` beyond
        ``per_minute`` connects this minute; else the index of the key at its limit. One
        round trip on a single Redis; in a cluster (keys on different shards) one per step."""
        if not self._single:
            if not await self.connect_allowed(principal, per_minute):
                return RATE_REFUSED
            return await self.count(limited)
        for key, _ in limited:
            self._ref(key, 1)
        try:
            outcome = int(
                await self._admit(
                    keys=[
                        keys.rate_connect(principal, int(self.clock() // 60)),
                        *(key for key, _ in limited),
                        self._set,
                    ],
                    args=[self._gid, per_minute, *(limit for _, limit in limited)],
                )
            )
        except BaseException:
            for key, _ in limited:
                self._ref(key, -1)
            raise
        if outcome == -2:
            return None
        for key, _ in limited:
            self._ref(key, -1)
        return outcome

    async def connect_allowed(self, principal: str, per_minute: int) -> bool:
        """Count one connect of ``principal`` (``kind:id``) in this calendar minute,
        cluster-wide; False beyond ``per_minute`` (reconnect churn, e.g. a flapping agent)."""
        return await self._per_minute(keys.rate_connect, principal) <= per_minute

    async def messages_this_minute(self, principal: str) -> int:
        """Count one client message of ``principal`` (``kind:id``) in this calendar minute,
        cluster-wide; the count so far (the caller compares it with its limit)."""
        return await self._per_minute(keys.rate_user, principal)

    async def _per_minute(self, key: Callable[[str, int], str], principal: str) -> int:
        window = int(self.clock() // 60)
        # Kept two windows: a late call of the previous minute still finds its counter.
        return int(await self._rate(keys=[key(principal, window)], args=[120]))

    async def count(self, limited: list[tuple[str, int]]) -> int | None:
        """Count one connection in each ``(key, limit)`` in order; the index of the first
        key at its limit (nothing stays counted then), or None when all were counted."""
        counted: list[str] = []
        for index, (key, limit) in enumerate(limited):
            self._ref(key, 1)
            try:
                refused = await self._count(keys=[key], args=[self._gid, limit])
            except BaseException:
                self._ref(key, -1)
                with contextlib.suppress(*CONNECTION_ERRORS):
                    await self.uncount(counted)
                raise
            if refused:
                self._ref(key, -1)
                await self.uncount(counted)
                return index
            counted.append(key)
        # Remembered so that the others can forget these counts if this gateway dies.
        await self._redis.sadd(self._set, *counted)
        return None

    async def uncount(self, counted: list[str]) -> None:
        for key in counted:
            self._ref(key, -1)
        for key in counted:
            gone = await self._uncount(keys=[key], args=[self._gid])
            if gone and not self.refs.get(key):
                await self._redis.srem(self._set, key)

    def _ref(self, key: str, delta: int) -> None:
        n = self.refs.get(key, 0) + delta
        if n > 0:
            self.refs[key] = n
        else:
            self.refs.pop(key, None)
