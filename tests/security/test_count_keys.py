"""Finding 14: connection-count bookkeeping shrinks back when connections leave."""

from __future__ import annotations

import asyncio

import pytest
from roomgate_common import keys
from roomgate_common.redis_adapter import connect

from tests.gateway.conftest import Stack

pytestmark = pytest.mark.timeout(30)


@pytest.mark.gateway_settings(max_connections_per_ip=50)
async def test_count_keys_are_removed_when_their_count_reaches_zero(stack: Stack) -> None:
    """After 20 principals connect and leave, no count hash and no countkeys entry is left."""
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
