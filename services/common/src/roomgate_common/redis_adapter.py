"""The one seam between Roomgate and Redis.

``connect`` builds a client that retries connection errors with exponential backoff;
``translate_errors`` turns redis-py's connection failures into ``BusUnavailable`` so callers
never import ``redis`` exceptions.

Every client's pool is bounded (``max_connections``) and blocking: a command that finds
no free connection waits up to ``pool_timeout`` seconds for one, and only then fails with
``PoolExhausted``, which ``translate_errors`` turns into ``BusBusy`` — this process has too
much in flight, Redis itself is fine — never into ``BusUnavailable``. (redis-py's asyncio
cluster client has no blocking pool: there a semaphore of ``max_connections`` commands in
flight per client stands in for it, below each node's own limit.)

Redis Cluster is chosen by the URL: ``redis+cluster://host:port`` (``rediss+cluster://``
with TLS) names any node of the cluster. Redis Sentinel likewise:
``redis+sentinel://[:password@]host1:26379,host2:26379/<master name>/<db>`` (the password is
the data nodes'; the client follows the master through failovers).

In cluster mode room messages travel over sharded pub/sub (``SPUBLISH``/``SSUBSCRIBE``:
each room's channel lives on the shard that owns the room's keys), and every multi-key
operation stays within one hash slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError
from redis.exceptions import TimeoutError as RedisTimeoutError

from roomgate_common.errors import BusBusy, BusUnavailable

Redis = aioredis.Redis

CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def cluster_url(url: str) -> str | None:
    """The plain URL of a ``redis+cluster://`` URL; None for a single server's URL."""
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme)
    return f"{plain}://{rest}" if sep and plain else None


def is_cluster(redis: object) -> bool:
    return isinstance(redis, RedisCluster)


SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}

CONNECT_TIMEOUT = 2.0  # seconds to open a connection
POOL_MAX_CONNECTIONS = 64  # per client (per node of a cluster)
POOL_TIMEOUT = 2.0  # seconds a command waits for a free pooled connection
COMMAND_TIMEOUT = 5.0  # seconds for a command's reply
HEALTH_CHECK_INTERVAL = 15  # seconds idle before a connection is PINGed before use


def _client_options(retries: int) -> dict[str, Any]:
    """What every Roomgate client shares: bytes replies, timeouts, bounded retries."""
    return {
        "decode_responses": False,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": COMMAND_TIMEOUT,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
    }


def _server_options(name: str, retries: int) -> dict[str, Any]:
    """A single server's (or a Sentinel-followed master's) client: named, health-checked,
    retrying timeouts too."""
    return {
        **_client_options(retries),
        "client_name": name,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }


class PoolExhausted(MaxConnectionsError):
    """No pooled connection became free within the pool's timeout."""


class _BlockingPool(BlockingConnectionPool):
    """redis-py's blocking pool, failing with ``PoolExhausted`` (not a plain connection
    error) when its wait times out."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            # redis-py leaves this method unannotated (and untyped_calls_exclude does not
            # reach calls through super()).
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisConnectionError as exc:
            if isinstance(exc.__cause__, asyncio.TimeoutError):
                raise PoolExhausted(f"no free connection within {self.timeout} s") from exc
            raise


class _BlockingSentinelPool(SentinelConnectionPool, _BlockingPool):
    """The Sentinel-following pool, bounded and blocking."""


class _BoundedCluster(RedisCluster):
    """A cluster client with at most ``limit`` commands in flight: the others wait (up to
    ``pool_timeout``) instead of failing on a full node pool."""

    def bound(self, limit: int, timeout: float) -> None:
        self._bound_limit, self._bound_timeout = limit, timeout
        self._bound: asyncio.Semaphore | None = None

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._bound is None:
            self._bound = asyncio.Semaphore(self._bound_limit)
        try:
            await asyncio.wait_for(self._bound.acquire(), self._bound_timeout)
        except TimeoutError:
            raise PoolExhausted(f"no free connection within {self._bound_timeout} s") from None
        try:
            return await super().execute_command(*args, **kwargs)
        finally:
            self._bound.release()


class _SentinelMaster(aioredis.Redis):
    """The master's client; closing it closes the Sentinel connections it follows too."""

    sentinels: list[aioredis.Redis]

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for sentinel in getattr(self, "sentinels", []):
            await sentinel.aclose()


def _sentinel(
    url: str, *, name: str, retries: int, max_connections: int, pool_timeout: float
) -> Redis | None:
    """The master client of a ``redis+sentinel://`` URL; None for any other URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SENTINEL_SCHEMES:
        return None
    auth, at, location = rest.rpartition("@")
    password = unquote(auth.partition(":")[2]) if at else None
    hosts, _, path = location.partition("/")
    master, _, db = path.partition("/")
    if not master:
        raise ValueError("redis+sentinel:// URL needs /<master name>[/<db>]")
    nodes = []
    for hostport in hosts.split(","):
        host, _, port = hostport.strip().rpartition(":")
        nodes.append((host.strip("[]"), int(port or 26379)))
    sentinel = Sentinel(
        nodes,
        socket_connect_timeout=CONNECT_TIMEOUT,
        sentinel_kwargs={"socket_connect_timeout": CONNECT_TIMEOUT},
    )
    client: _SentinelMaster = sentinel.master_for(
        master,
        redis_class=_SentinelMaster,
        connection_pool_class=_BlockingSentinelPool,
        max_connections=max_connections,
        timeout=pool_timeout,
        db=int(db or 0),
        password=password,
        ssl=SENTINEL_SCHEMES[scheme],
        **_server_options(name, retries),
    )
    client.sentinels = sentinel.sentinels
    return client


def connect(
    url: str,
    *,
    name: str = "roomgate",
    retries: int = 3,
    max_connections: int = POOL_MAX_CONNECTIONS,
    pool_timeout: float = POOL_TIMEOUT,
) -> Redis:
    """A client for ``url`` (``redis://``, ``rediss://``, ``unix://``, a cluster's
    ``redis+cluster://`` or ``redis+sentinel://``) with bounded retries and a bounded,
    blocking pool of ``max_connections`` (a command waits up to ``pool_timeout`` s)."""
    via_sentinel = _sentinel(
        url, name=name, retries=retries, max_connections=max_connections, pool_timeout=pool_timeout
    )
    if via_sentinel is not None:
        return via_sentinel
    plain = cluster_url(url)
    if plain is not None:
        cluster = cast(  # from_url is typed as returning RedisCluster; it returns cls(...)
            _BoundedCluster,
            _BoundedCluster.from_url(
                plain, max_connections=max_connections, **_client_options(retries)
            ),
        )
        cluster.bound(max_connections, pool_timeout)
        return cluster  # type: ignore[return-value]  # the same command API
    pool = _BlockingPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout,
        **_server_options(name, retries),
    )
    return aioredis.Redis.from_pool(pool)  # closing the client closes the pool


@asynccontextmanager
async def translate_errors(what: str) -> AsyncIterator[None]:
    """Raise ``BusUnavailable`` for Redis connection failures inside the block, and
    ``BusBusy`` when the client's pool had no free connection in time."""
    try:
        yield
    except MaxConnectionsError as exc:
        raise BusBusy(f"redis pool exhausted during {what}") from exc
    except CONNECTION_ERRORS as exc:
        raise BusUnavailable(f"redis unavailable during {what}") from exc


class TurnPipeline:
    """Auto-pipelining: the commands asked for in one event-loop turn go to Redis together,
    in one non-transactional pipeline — one pool checkout, one socket write, one read of the
    replies — instead of a round trip each, whose pool checkout, socket write and reply
    wait dominate a small command's client CPU; a reconnect storm's concurrent connects
    each ask for a few (the storm's figures: docs/benchmarks.md).

    A lone command waits only for the next loop iteration (``call_soon``, no timer). At most
    ``max_commands`` go in one pipeline, the rest in the next one of the same turn. Each
    caller gets its own reply, or its own command's error (``NoScriptError``, a
    ``ResponseError``) raised; a failed connection fails every caller of that pipeline with
    ``BusUnavailable`` (``BusBusy`` for a pool without a free connection in time), as
    ``translate_errors`` would. A single Redis or a Sentinel master only: a cluster's
    pipelines split by slot and refuse scripts, so there the callers send directly.

    ``observe`` is told the size of each pipeline sent (a histogram, for the dashboards)."""

    def __init__(
        self,
        redis: Redis,
        *,
        max_commands: int = 1000,
        observe: Callable[[int], None] | None = None,
    ) -> None:
        self._redis = redis
        self._max = max_commands
        self._observe = observe
        self._waiting: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()
        self._closed = False

    def call(self, *args: Any) -> asyncio.Future[Any]:
        """The reply of the command ``args`` (e.g. ``"HGET", key, field``), once sent."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._closed:
            future.set_exception(BusUnavailable("redis pipeline closed"))
            return future
        self._waiting.append((args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        while self._waiting:
            batch = self._waiting[: self._max]
            del self._waiting[: self._max]
            task = loop.create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        if self._observe is not None:
            self._observe(len(batch))
        pipe = self._redis.pipeline(transaction=False)
        for args, _ in batch:
            pipe.execute_command(*args)
        try:
            async with translate_errors("pipeline"):
                replies = await pipe.execute(raise_on_error=False)
        except (BusUnavailable, BusBusy) as exc:
            for _, future in batch:
                if not future.done():  # each caller its own exception (own traceback)
                    future.set_exception(type(exc)(str(exc)))
            return
        except BaseException:  # cancelled (shutdown), or a bug: nobody waits forever
            for _, future in batch:
                if not future.done():
                    future.set_exception(BusUnavailable("redis pipeline not sent"))
            raise
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller gave up (cancelled)
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def close(self) -> None:
        """Cancel the pipelines on their way; their callers, those of commands not sent yet
        and any later caller get ``BusUnavailable``."""
        self._closed = True
        waiting, self._waiting = self._waiting, []
        for _, future in waiting:
            if not future.done():
                future.set_exception(BusUnavailable("redis pipeline closed"))
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
