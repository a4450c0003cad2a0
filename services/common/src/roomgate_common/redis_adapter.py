"""The one seam between Roomgate and Redis.

``connect`` builds a client that retries connection errors with exponential backoff;
``translate_errors`` turns redis-py's connection failures into ``BusUnavailable`` so callers
never import ``redis`` exceptions.

Redis Cluster is chosen by the URL: ``redis+cluster://host:port`` (``rediss+cluster://``
with TLS) names any node of the cluster. In cluster mode room messages travel over sharded
pub/sub (``SPUBLISH``/``SSUBSCRIBE``: each room's channel lives on the shard that owns the
room's keys), and every multi-key operation stays within one hash slot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from roomgate_common.errors import BusUnavailable

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


def connect(url: str, *, name: str = "roomgate", retries: int = 3) -> Redis:
    """A client for ``url`` (``redis://``, ``rediss://``, ``unix://``, or a cluster's
    ``redis+cluster://``) with bounded retries."""
    plain = cluster_url(url)
    if plain is not None:
        cluster = RedisCluster.from_url(
            plain,
            decode_responses=False,
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
        )
        return cluster  # type: ignore[return-value]  # the same command API
    return aioredis.Redis.from_url(
        url,
        client_name=name,
        decode_responses=False,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


@asynccontextmanager
async def translate_errors(what: str) -> AsyncIterator[None]:
    """Raise ``BusUnavailable`` for Redis connection failures inside the block."""
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise BusUnavailable(f"redis unavailable during {what}") from exc
