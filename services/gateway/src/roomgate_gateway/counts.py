"""Cluster-wide connection counts (per IP, per principal) and per-minute rates (connects and
messages per principal) in Redis, through the gateway's store (its ``store_*.lua``).

Each count is a hash with one field per gateway (``keys.conn_count_*``); the gateway
remembers the hashes it has a field in (``keys.gateway_count_keys``) so that the others can
forget its counts if it dies. A field is deleted when its count reaches zero, and the hash
leaves the gateway's set with it: neither grows with every IP and principal ever seen.

On a single Redis a connect's script adds the field and the set entry together and a
disconnect's removes them together, so the set is right whatever order the gateway's
pipelines arrive in. On a cluster the hash and the set may be on different shards: there
the gateway keeps its own reference count per hash (``refs``), changed before any Redis
call, and removes the set entry when the last local connection leaves a hash, never while
another local connection is being counted there.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from roomgate_common import keys

from roomgate_gateway.store import BUS_ERRORS, GatewayStore

RATE_REFUSED = -1


class ConnectionCounts:
    """This gateway's share of the cluster-wide connection counts (raises what the store
    raises: ``BusUnavailable``, ``BusBusy``)."""

    def __init__(self, store: GatewayStore) -> None:
        self._store = store
        self._single = not store.cluster
        self.refs: dict[str, int] = {}  # on a cluster only
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
        outcome = await self._store.admit(
            keys.rate_connect(principal, int(self.clock() // 60)), per_minute, limited
        )
        return None if outcome == -2 else outcome

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
        return await self._store.per_window(key(principal, window), 120)

    async def count(self, limited: list[tuple[str, int]]) -> int | None:
        """Count one connection in each ``(key, limit)`` in order; the index of the first
        key at its limit (nothing stays counted then), or None when all were counted."""
        counted: list[str] = []
        for index, (key, limit) in enumerate(limited):
            self._ref(key, 1)
            try:
                refused = not await self._store.count(key, limit)
            except BaseException:
                self._ref(key, -1)
                with contextlib.suppress(*BUS_ERRORS):
                    await self.uncount(counted)
                raise
            if refused:
                self._ref(key, -1)
                await self.uncount(counted)
                return index
            counted.append(key)
        # Remembered so that the others can forget these counts if this gateway dies.
        await self._store.remember_counts(counted)
        return None

    async def uncount(self, counted: list[str]) -> None:
        """One connection less in each key of ``counted``: one round trip on a single Redis;
        in a cluster (keys on different shards) one or two per key."""
        if self._single:
            await self._store.release(counted)
            return
        for key in counted:
            self._ref(key, -1)
        for key in counted:
            gone = await self._store.uncount(key)
            if gone and not self.refs.get(key):
                await self._store.forget_count(key)

    def _ref(self, key: str, delta: int) -> None:
        n = self.refs.get(key, 0) + delta
        if n > 0:
            self.refs[key] = n
        else:
            self.refs.pop(key, None)
