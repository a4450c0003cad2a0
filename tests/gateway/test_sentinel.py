"""Redis Sentinel mode (`redis+sentinel://`): every service finds the master through a real
Sentinel; fan-out, limits and the publish API work as on a single server."""

from __future__ import annotations

import websockets
from roomgate_tools.procs import RedisSentinelProcess

from tests.gateway.conftest import recv, running_stack, send


async def test_whole_stack_through_sentinel(redis_sentinel: RedisSentinelProcess) -> None:
    """auth, roomauthz and the gateway on a Sentinel URL: subscribe, publish, receive, limits."""
    from roomgate_common.redis_adapter import connect

    redis = connect(redis_sentinel.url)
    await redis.flushall()
    await redis.aclose()
    async with running_stack(redis_sentinel.url, max_connections_per_user=1) as stack:
        ws = await stack.connect(stack.token("42"))
        await send(ws, {"type": "subscribe", "data": {"room": "system"}})
        assert (await recv(ws))["type"] == "subscribed"
        sent = await stack.publish("system", "metrics_update", {"cpu": 1})
        got = await recv(ws)
        assert got["id"] == sent.id
        again = await websockets.connect(f"{stack.url}?token={stack.token('42')}")
        assert (await recv(again))["data"]["code"] == "connection_limit"
