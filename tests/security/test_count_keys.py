"""Finding 14: connection-count bookkeeping shrinks back when connections leave."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from roomgate_common import keys
from roomgate_common.redis_adapter import connect
from roomgate_gateway.counts import ConnectionCounts
from roomgate_gateway.store import GatewayStore

from tests.gateway.conftest import Stack, running_stack

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(params=["single", "cluster"])
async def counted_stack(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """The stack on a single Redis (one script per connect and disconnect) or on a Redis
    Cluster (hash and set on different shards: the gateway's reference counts decide)."""
    url = redis_url
    if request.param == "cluster":
        url = request.getfixturevalue("redis_cluster").url
        cluster = connect(url)
        await cluster.flushall()  # type: ignore[call-arg]
        await cluster.aclose()
    async with running_stack(url, services_url=redis_url, max_connections_per_ip=50) as stack:
        yield stack


async def test_count_keys_are_removed_when_their_count_reaches_zero(
    counted_stack: Stack,
) -> None:
    """After 20 principals connect and leave, no count hash and no countkeys entry is left."""
    stack = counted_stack
    clients = [await stack.connect(stack.token(str(100 + i))) for i in range(20)]
    redis = connect(stack.redis_url)
    try:
        tracked = keys.gateway_count_keys(stack.settings.gateway_id)
        assert await redis.scard(tracked) == 21  # one IP, twenty principals
        for ws in clients:
            await ws.close()
        for _ in range(100):  # until the gateway has seen every close (or 5 s)
            if not stack.gateway.connections and not await redis.scard(tracked):
                break
            await asyncio.sleep(0.05)
        assert not stack.gateway.connections
        assert await redis.scard(tracked) == 0
        assert [k async for k in redis.scan_iter(match="rg:conn:*")] == []
        assert stack.gateway.counts.refs == {}
    finally:
        await redis.aclose()


async def test_disconnects_reaching_redis_swapped_leave_no_count_key(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two disconnects of one IP and principal sent in consecutive loop turns travel on
    different pool connections and can reach Redis in the other order (seen in CI: one
    count key left in the gateway's set): the set must still end empty."""
    store = GatewayStore.connect(redis_url, "gw-order", pool_size=4, pool_timeout=1.0)
    counts = ConnectionCounts(store)
    limited = [(keys.conn_count_ip("10.0.0.1"), 10), (keys.conn_count_user("user:u"), 10)]
    counted = [key for key, _ in limited]
    release = store.release
    second_done = asyncio.Event()
    calls = 0

    async def swapped(*args: object) -> None:
        """The first disconnect reaches Redis only after the second one has."""
        nonlocal calls
        calls += 1
        if calls == 1:
            await second_done.wait()
            await release(*args)  # type: ignore[arg-type]
        else:
            await release(*args)  # type: ignore[arg-type]
            second_done.set()

    try:
        for _ in range(2):
            assert await counts.admit("user:u", 100, limited) is None
        tracked = keys.gateway_count_keys("gw-order")
        assert await store.redis.scard(tracked) == 2
        monkeypatch.setattr(store, "release", swapped)
        await asyncio.gather(counts.uncount(counted), counts.uncount(counted))
        assert calls == 2
        assert await store.redis.scard(tracked) == 0
        assert [k async for k in store.redis.scan_iter(match="rg:conn:*")] == []
    finally:
        await store.close()
