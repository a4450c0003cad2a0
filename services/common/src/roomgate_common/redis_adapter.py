"""The one seam between Roomgate and Redis.

``connect`` builds a client that retries connection errors with exponential backoff;
``translate_errors`` turns redis-py's connection failures into ``BusUnavailable`` so callers
never import ``redis`` exceptions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from roomgate_common.errors import BusUnavailable

Redis = aioredis.Redis

CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


def connect(url: str, *, name: str = "roomgate", retries: int = 3) -> Redis:
    """A client for ``url`` (``redis://``, ``rediss://``, ``unix://``) with bounded retries."""
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
