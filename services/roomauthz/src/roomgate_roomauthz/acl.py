"""The ACL data in Redis (the one Redis seam of roomauthz): reads for decisions, atomic
changes that publish exactly one invalidation event, listings for operators, an optional
short-TTL read cache and the listener that invalidates it.

Layout (``roomgate_common.keys``): ``acl_set(relation, subject)`` is the set of object ids of
one subject, ``acl_subjects(relation)`` the set of subjects with at least one entry,
``ACL_VERSION`` the version counter. Every key shares the ``{acl}`` hash tag, so one Lua
script (``acl_*.lua`` beside this module) changes them atomically (also on Redis Cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from roomgate_common import keys
from roomgate_common.aclevents import AclChange, AclChangedEvent, Relation, parse_acl_event
from roomgate_common.errors import BusUnavailable
from roomgate_common.lua import load_lua
from roomgate_common.redis_adapter import CONNECTION_ERRORS, Redis, translate_errors

from roomgate_roomauthz.policy import AclFacts, Lookup

log = logging.getLogger(__name__)

CHANGE_SCRIPT = load_lua(__package__, "acl_change.lua")
"""Applies ACL changes and publishes the effective ones (acl_change.lua says KEYS, ARGV)."""

LIST_SCRIPT = load_lua(__package__, "acl_list.lua")
"""One relation's entries from one consistent snapshot (acl_list.lua)."""


@dataclass(frozen=True, slots=True)
class AclEntry:
    relation: Relation
    subject_id: str
    object_id: str


class AclCache:
    """Short-TTL cache of ACL reads. ``invalidate`` drops entries and bumps ``generation`` so
    a read that started before an invalidation is not stored afterwards."""

    def __init__(
        self, ttl: float, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self.generation = 0
        self._entries: dict[Lookup, tuple[float, frozenset[str]]] = {}

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def get(self, lookup: Lookup) -> frozenset[str] | None:
        entry = self._entries.get(lookup)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self._entries[lookup]
            return None
        return entry[1]

    def put(self, lookup: Lookup, value: frozenset[str], generation: int) -> None:
        if not self.enabled or generation != self.generation:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[lookup] = (self.clock() + self.ttl, value)

    def invalidate(self, lookups: Iterable[Lookup] | None = None) -> None:
        """Drop ``lookups`` (every entry when None)."""
        self.generation += 1
        if lookups is None:
            self._entries.clear()
        else:
            for lookup in lookups:
                self._entries.pop(lookup, None)

    def __len__(self) -> int:
        return len(self._entries)


def lookups_of(event: AclChangedEvent) -> set[Lookup]:
    """The cached reads an event makes stale."""
    return {(c.relation, c.subject_id) for c in event.changes}


class AclStore:
    """Reads and changes the ACL data in Redis; raises ``BusUnavailable`` when it is down."""

    def __init__(self, redis: Redis, cache: AclCache | None = None) -> None:
        self.redis = redis
        self.cache = cache if cache is not None else AclCache(0)
        self._change = redis.register_script(CHANGE_SCRIPT)
        self._list = redis.register_script(LIST_SCRIPT)
        self.cache_hits = 0
        self.cache_misses = 0

    async def facts(self, lookups: Iterable[Lookup]) -> AclFacts:
        """The object ids of each lookup (one round trip for every uncached one)."""
        result: dict[Lookup, frozenset[str]] = {}
        missing: list[Lookup] = []
        for lookup in lookups:
            cached = self.cache.get(lookup) if self.cache.enabled else None
            if cached is None:
                missing.append(lookup)
            else:
                result[lookup] = cached
        self.cache_hits += len(result)
        self.cache_misses += len(missing)
        if not missing:
            return result
        generation = self.cache.generation
        async with (
            translate_errors("acl read"),
            self.redis.pipeline(transaction=False) as pipe,
        ):
            for relation, subject in missing:
                pipe.smembers(keys.acl_set(relation.value, subject))
            answers = await pipe.execute()
        for lookup, members in zip(missing, answers, strict=True):
            value = frozenset(m.decode() for m in members)
            result[lookup] = value
            self.cache.put(lookup, value, generation)
        return result

    async def change(
        self, add: Sequence[AclEntry], remove: Sequence[AclEntry]
    ) -> tuple[int, list[AclChange]]:
        """Apply ``remove`` then ``add`` atomically; publish one event when anything changed.
        Returns the version after the change and the changes requested (the event lists
        only those that had an effect)."""
        changes = [AclChange("remove", e.relation, e.subject_id, e.object_id) for e in remove]
        changes += [AclChange("add", e.relation, e.subject_id, e.object_id) for e in add]
        script_keys: list[str] = [keys.ACL_VERSION]
        args: list[str] = [keys.ACL_CHANGED_CHANNEL]
        for c in changes:
            script_keys += [
                keys.acl_set(c.relation.value, c.subject_id),
                keys.acl_subjects(c.relation.value),
            ]
            args += [c.op, c.object_id, c.subject_id, c.to_json()]
        async with translate_errors("acl change"):
            version, _count = await self._change(keys=script_keys, args=args)
        # Our own reads must see the change at once (other replicas get the event).
        self.cache.invalidate({(c.relation, c.subject_id) for c in changes})
        return int(version), changes

    async def list(
        self, relations: Iterable[Relation], subject_id: str = ""
    ) -> tuple[list[AclEntry], int]:
        """Entries of ``relations`` (of one subject when given), sorted, and the version."""
        entries: list[AclEntry] = []
        version = 0
        async with translate_errors("acl list"):
            for relation in relations:
                if subject_id:
                    async with self.redis.pipeline(transaction=True) as pipe:
                        pipe.get(keys.ACL_VERSION)
                        pipe.smembers(keys.acl_set(relation.value, subject_id))
                        raw_version, members = await pipe.execute()
                    version = max(version, int(raw_version or 0))
                    entries += [AclEntry(relation, subject_id, m.decode()) for m in members]
                else:
                    out = await self._list(
                        keys=[keys.ACL_VERSION, keys.acl_subjects(relation.value)],
                        args=[keys.acl_set(relation.value, "")],
                    )
                    version = max(version, int(out[0]))
                    pairs = out[1:]
                    entries += [
                        AclEntry(relation, pairs[i].decode(), pairs[i + 1].decode())
                        for i in range(0, len(pairs), 2)
                    ]
        entries.sort(key=lambda e: (e.relation.value, int(e.subject_id), int(e.object_id)))
        return entries, version


class AclInvalidationListener:
    """Subscribes to the ACL channel and invalidates the cache on every event. While the
    subscription is down the cache is bypassed (cleared), and ``on_health(False)`` is called
    so readiness reflects that Redis is unreachable."""

    def __init__(
        self,
        redis: Redis,
        cache: AclCache,
        *,
        on_health: Callable[[bool], Awaitable[None]] | None = None,
        retry_delay: float = 0.5,
    ) -> None:
        self.redis = redis
        self.cache = cache
        self.on_health = on_health
        self.retry_delay = retry_delay
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()
        self.events_seen = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="acl-invalidation")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _report(self, healthy: bool) -> None:
        if self.on_health is not None:
            await self.on_health(healthy)

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except (BusUnavailable, *CONNECTION_ERRORS) as exc:
                log.warning("acl invalidation subscription lost", extra={"error": str(exc)})
            except Exception:
                # Never let the listener die quietly: the cache would then rely on its TTL.
                log.exception("acl invalidation listener failed; resubscribing")
            self.subscribed.clear()
            self.cache.invalidate()
            await self._report(False)
            await asyncio.sleep(self.retry_delay)

    async def _listen(self) -> None:
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(keys.ACL_CHANGED_CHANNEL)
            # Anything cached before this point may have missed events.
            self.cache.invalidate()
            self.subscribed.set()
            await self._report(True)
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                if message is None or message.get("type") != "message":
                    continue
                self.events_seen += 1
                try:
                    event = parse_acl_event(message["data"])
                except ValueError:
                    log.warning("malformed acl event; dropping the whole cache")
                    self.cache.invalidate()
                    continue
                self.cache.invalidate(lookups_of(event))
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
