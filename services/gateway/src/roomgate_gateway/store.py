"""The gateway's one seam to Redis for commands (the pub/sub connection is ``bus.py``).

Every Redis command a gateway module issues is a method here: the mailbox and room
history reads, the live policy, the presence report and the forgetting of dead gateways,
the cluster-wide counts and rates (``store_*.lua``), the batched mailbox writes, the
revocation marks and the scrape's ``INFO memory``. Each method raises only the translated
errors of ``roomgate_common.errors`` — ``BusUnavailable`` (Redis down) and ``BusBusy``
(this process's pool had no free connection in time) — never a ``redis`` exception, so no
other gateway module imports ``redis``.

``GatewayStore`` is the gateway's; ``MailboxStore`` is the part the mailbox writer uses
(``mailboxwrites.py``), which tests also build on a bare client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError
from redis.typing import EncodableT
from roomgate_common import keys, mailbox
from roomgate_common.errors import BusBusy, BusUnavailable
from roomgate_common.lua import load_lua
from roomgate_common.redis_adapter import (
    Redis,
    TurnPipeline,
    connect,
    is_cluster,
    translate_errors,
)

# What every method here can raise: Redis down, or this process's pool busy.
BUS_ERRORS = (BusUnavailable, BusBusy)

COUNT_SCRIPT = load_lua(__package__, "store_count.lua")
UNCOUNT_SCRIPT = load_lua(__package__, "store_uncount.lua")
ADMIT_SCRIPT = load_lua(__package__, "store_admit.lua")
RELEASE_SCRIPT = load_lua(__package__, "store_release.lua")
RATE_SCRIPT = load_lua(__package__, "store_rate.lua")

# A history entry: its offset and its fields (``m`` the message, ``t`` the append time).
Entry = tuple[int, dict[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A user's mailbox as read at connect: envelope ids in order, their payloads (None
    when expired or gone) and how many messages overflowed since the last read."""

    ids: list[str]
    payloads: list[bytes | None]
    evicted: int


def _entries(raw: list[Any]) -> list[Entry]:
    return [(int(entry_id.split(b"-")[0]), fields) for entry_id, fields in raw]


class GatewayStore:
    """The hot commands (a connect's, a disconnect's, a client message's rate, a recovery's
    reads) go through a ``TurnPipeline`` on a single Redis: those of one loop turn are one
    round trip. The rest, and everything on a cluster, are sent directly."""

    def __init__(
        self,
        redis: Redis,
        gateway_id: str,
        *,
        pipeline_max: int = 1000,
        pipeline_sizes: Callable[[int], None] | None = None,
    ) -> None:
        self.redis = redis  # the client itself, for the shared Publisher and for tests
        self._gid = gateway_id
        self._counts = keys.gateway_count_keys(gateway_id)
        self._count = redis.register_script(COUNT_SCRIPT)
        self._uncount = redis.register_script(UNCOUNT_SCRIPT)
        self._rate = redis.register_script(RATE_SCRIPT)
        self._admit = redis.register_script(ADMIT_SCRIPT)
        self._release = redis.register_script(RELEASE_SCRIPT)
        self.cluster = is_cluster(redis)
        self._pipe = (
            None
            if self.cluster
            else TurnPipeline(redis, max_commands=pipeline_max, observe=pipeline_sizes)
        )

    @classmethod
    def connect(
        cls,
        url: str,
        gateway_id: str,
        *,
        pool_size: int,
        pool_timeout: float,
        pipeline_max: int = 1000,
        pipeline_sizes: Callable[[int], None] | None = None,
    ) -> GatewayStore:
        client = connect(
            url, name="roomgate-gateway", max_connections=pool_size, pool_timeout=pool_timeout
        )
        return cls(client, gateway_id, pipeline_max=pipeline_max, pipeline_sizes=pipeline_sizes)

    async def close(self) -> None:
        if self._pipe is not None:
            await self._pipe.close()
        await self.redis.aclose()

    def _command(self, *args: Any) -> Awaitable[Any]:
        """One command, in this loop turn's pipeline on a single Redis."""
        if self._pipe is None:
            return self.redis.execute_command(*args)
        return self._pipe.call(*args)

    async def _script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """A registered script by EVALSHA, pipelined like ``_command``; a Redis that forgot
        it (restart, failover) is sent the script itself, once, by redis-py."""
        if self._pipe is None:
            return await script(keys=keys, args=args)
        try:
            return await self._pipe.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await script(keys=keys, args=args)

    async def ping(self) -> bool:
        async with translate_errors("ready"):
            return bool(await self.redis.ping())

    # ------------------------------------------------------------------ mailbox, history
    async def read_mailbox(self, user_id: str) -> Mailbox:
        """The user's mailbox, and its overflow count reset (it is reported once)."""
        box, msgs, _low = keys.mailbox_keys(user_id)
        async with translate_errors("mailbox"):
            # the ids and the overflow count together (an empty mailbox: one round trip)
            ids, evicted_field = await asyncio.gather(
                self._command("ZRANGE", box, 0, -1),
                self._command("HGET", msgs, mailbox.EVICTED_FIELD),
            )
            ids = cast(list[bytes], ids)
            evicted = int(cast(bytes | None, evicted_field) or 0)
            payloads = cast(
                list[bytes | None], await self._command("HMGET", msgs, *ids) if ids else []
            )
            if evicted:
                await self._command("HDEL", msgs, mailbox.EVICTED_FIELD)
        return Mailbox([i.decode() for i in ids], list(payloads), evicted)

    async def room_position(self, room: str) -> tuple[str, int]:
        """The room's epoch and last offset ("" and 0 for a room never published to)."""
        async with translate_errors("recover"):
            meta = cast(
                list[bytes | None],
                await self._command("HMGET", keys.room_meta(room), "epoch", "offset"),
            )
        return (meta[0] or b"").decode(), int(meta[1] or 0)

    async def room_epoch(self, room: str) -> str | None:
        async with translate_errors("catch-up"):
            epoch = cast(bytes | None, await self.redis.hget(keys.room_meta(room), "epoch"))
        return epoch.decode() if epoch is not None else None

    async def history_after(self, room: str, offset: int) -> list[Entry]:
        """The room's history entries after ``offset``, in order."""
        async with translate_errors("history"):
            raw = await self._command("XRANGE", keys.room_history(room), f"{offset + 1}-1", "+")
        return _entries(cast(list[Any], raw))

    # ------------------------------------------------------------------ policy, presence
    async def live_policy(self) -> dict[bytes, bytes]:
        async with translate_errors("policy"):
            return cast(dict[bytes, bytes], await self.redis.hgetall(keys.LIVE_POLICY))

    async def report_presence(self, fields: Mapping[str, float | int], ttl: int) -> None:
        """This gateway's presence hash (expiring after ``ttl`` s) and its heartbeat."""
        key = keys.gateway_presence(self._gid)
        mapping: dict[EncodableT, EncodableT] = {k: v for k, v in fields.items()}
        async with translate_errors("presence"):
            pipe = self.redis.pipeline(transaction=False)  # two shards in a cluster
            pipe.hset(key, mapping=mapping)
            pipe.expire(key, ttl)
            pipe.zadd(keys.GATEWAYS, {self._gid: time.time()})
            await pipe.execute()

    async def dead_gateways(self, stale_before: float) -> list[str]:
        """The gateways whose last heartbeat is older than ``stale_before``."""
        async with translate_errors("presence"):
            found = cast(
                list[bytes], await self.redis.zrangebyscore(keys.GATEWAYS, "-inf", stale_before)
            )
        return [gid.decode() for gid in found]

    async def forget_gateway(self, gateway_id: str) -> None:
        """A dead gateway's fields leave every count hash it had one in, then the gateway
        leaves the heartbeat set."""
        count_keys = keys.gateway_count_keys(gateway_id)
        async with translate_errors("presence"):
            for key in await self.redis.smembers(count_keys):
                await self.redis.hdel(key, gateway_id)
            await self.redis.delete(count_keys)
            await self.redis.zrem(keys.GATEWAYS, gateway_id)

    async def withdraw(self) -> None:
        """This gateway stops: its presence hash and heartbeat go (its counts went with
        its connections)."""
        async with translate_errors("stop"):
            await self.redis.delete(keys.gateway_presence(self._gid))
            await self.redis.zrem(keys.GATEWAYS, self._gid)

    # ------------------------------------------------------------------ counts (counts.py)
    async def admit(
        self, rate_key: str, per_minute: int, limited: Sequence[tuple[str, int]]
    ) -> int:
        """``store_admit.lua``: -1 beyond the rate, the index of a hash at its limit, or -2
        when counted everywhere."""
        async with translate_errors("connect"):
            return int(
                await self._script(
                    self._admit,
                    [rate_key, *(key for key, _ in limited), self._counts],
                    [self._gid, per_minute, *(limit for _, limit in limited)],
                )
            )

    async def count(self, key: str, limit: int) -> bool:
        """One connection more in ``key`` unless at ``limit``: False when refused."""
        async with translate_errors("connect"):
            return not await self._count(keys=[key], args=[self._gid, limit])

    async def uncount(self, key: str) -> bool:
        """One connection less in ``key``; True when this gateway's field is gone."""
        async with translate_errors("disconnect"):
            return bool(await self._uncount(keys=[key], args=[self._gid]))

    async def release(self, counted: Sequence[str]) -> None:
        """``store_release.lua``: one connection less in each key of ``counted``, and each
        key whose field is gone out of the gateway's set (a single Redis)."""
        async with translate_errors("disconnect"):
            await self._script(self._release, [*counted, self._counts], [self._gid])

    async def remember_counts(self, counted: Sequence[str]) -> None:
        async with translate_errors("connect"):
            await self.redis.sadd(self._counts, *counted)

    async def forget_count(self, key: str) -> None:
        async with translate_errors("disconnect"):
            await self.redis.srem(self._counts, key)

    async def per_window(self, key: str, expire: int) -> int:
        """One more event in the window counter ``key`` (kept ``expire`` s); the count."""
        async with translate_errors("rate"):
            return int(await self._script(self._rate, [key], [expire]))

    # ------------------------------------------------------------------ revocation, scrape
    async def revocation_marks(
        self, sessions: Sequence[tuple[str, str, str]]
    ) -> list[tuple[bool, bytes | None]]:
        """For each ``(token id, kind, principal id)``: whether the token is revoked, and
        the principal's revoked-before time if any (one pipeline)."""
        async with translate_errors("revocation sweep"):
            pipe = self.redis.pipeline(transaction=False)
            for token_id, kind, principal_id in sessions:
                pipe.exists(keys.revoked_token(token_id))
                pipe.get(keys.revoked_before(kind, principal_id))
            marks = await pipe.execute()
        return [(bool(j), b) for j, b in zip(marks[0::2], marks[1::2], strict=True)]

    async def memory_info(self) -> Any:
        """``INFO memory`` (per node on a cluster)."""
        async with translate_errors("scrape"):
            return await self.redis.info("memory")


class MailboxStore:
    """The mailbox writes of one batch in one pipeline (``mailboxwrites.py``): filings by
    ``roomgate_common.mailbox``'s script, removals as plain commands. On a Redis Cluster,
    whose pipelines refuse scripts, the filings are concurrent script calls beside it."""

    def __init__(self, redis: Redis, *, cap: int, ttl_ms: int) -> None:
        self._redis = redis
        self._cap = cap
        self._ttl_ms = ttl_ms
        self._file_script = redis.register_script(mailbox.FILE_SCRIPT)
        self._cluster = is_cluster(redis)
        self._loaded = False  # cluster only: the script is known to every primary

    async def write(
        self, files: list[tuple[str, str, str, str]], removals: dict[str, list[str]]
    ) -> tuple[list[object], list[object]]:
        """File ``files`` (user id, envelope id, payload, priority) and remove ``removals``
        (user id -> envelope ids): each filing's result (evicted count or an error), then
        three results per user of the removals. A Redis that forgot the script (restart,
        failover) gets it again and the filings it refused are retried once."""
        async with translate_errors("mailbox writes"):
            file_results, removal_results = await self._pipeline(files, removals)
            missing = [f for f, r in zip(files, file_results, strict=True) if _no_script(r)]
            if missing:
                await self._redis.script_load(mailbox.FILE_SCRIPT)
                self._loaded = True
                retried, _ = await self._pipeline(missing, {})
                file_results = [r for r in file_results if not _no_script(r)] + retried
        return file_results, removal_results

    async def _pipeline(
        self, files: list[tuple[str, str, str, str]], removals: dict[str, list[str]]
    ) -> tuple[list[object], list[object]]:
        pipe = self._redis.pipeline(transaction=False)
        sha = self._file_script.sha
        filed: list[object] = []
        if self._cluster:
            # redis-py's cluster pipelines refuse scripts: the filings go as concurrent
            # EVALSHA calls (the client bounds them), the removals in the pipeline. The
            # script is loaded on every primary first (once; again after a NOSCRIPT).
            if not self._loaded:
                await self._redis.script_load(mailbox.FILE_SCRIPT)
                self._loaded = True
            filed = list(
                await asyncio.gather(
                    *(self._redis.evalsha(sha, 3, *self._file_args(*f)) for f in files),
                    return_exceptions=True,
                )
            )
            files = []
        for f in files:
            pipe.evalsha(sha, 3, *self._file_args(*f))
        for user, ids in removals.items():
            box, msgs, low = keys.mailbox_keys(user)
            pipe.zrem(box, *ids)
            pipe.zrem(low, *ids)
            pipe.hdel(msgs, *ids)
        results = await pipe.execute(raise_on_error=False) if len(pipe) else []
        return filed + list(results[: len(files)]), list(results[len(files) :])

    def _file_args(
        self, user: str, envelope_id: str, payload: str, priority: str
    ) -> tuple[str | int, ...]:
        return (
            *keys.mailbox_keys(user),
            envelope_id,
            payload,
            priority,
            self._cap,
            self._ttl_ms,
            "",
        )


def _no_script(result: object) -> bool:
    return isinstance(result, NoScriptError)
