"""A gateway started before its Redis (pods of a release start together; the e2e cluster's
first install showed gateways crash-looping until Redis answered): it starts, says 503 on
/readyz, and serves once Redis comes, the live policy read then, with no restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from roomgate_common import keys
from roomgate_common.redis_adapter import connect
from roomgate_tools.procs import RedisProcess, free_port

from tests.gateway.conftest import recv_until, running_stack, send


async def _ready(url: str) -> int:
    async with httpx.AsyncClient(timeout=5) as http:
        return (await http.get(f"{url}/readyz")).status_code


async def test_a_gateway_started_before_redis_serves_once_it_comes(
    redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    later = RedisProcess(tmp_path / "redis", port=port, aof=False)
    # auth and roomauthz on the session's Redis; the gateway on one that is not there yet.
    async with running_stack(later.url, services_url=redis_url) as stack:
        assert await _ready(stack.http) == 503
        later.start()
        try:
            redis = connect(later.url)
            await redis.hset(
                keys.LIVE_POLICY,
                mapping={
                    "generation": "7",
                    "limits": json.dumps({"maxSubscriptionsPerConnection": 9}),
                },
            )
            await redis.aclose()
            for _ in range(100):  # the reader's reconnect backoff is at most 2 s
                if await _ready(stack.http) == 200:
                    break
                await asyncio.sleep(0.1)
            assert await _ready(stack.http) == 200
            ws = await stack.connect()
            await send(ws, {"type": "subscribe", "data": {"room": "system"}})
            await recv_until(ws, lambda m: m["type"] == "subscribed")
            await stack.publish("system", data={"n": 1})
            event = await recv_until(ws, lambda m: m["type"] == "metrics_update")
            assert event["data"] == {"n": 1}
            # The live policy was read when Redis came (none could be at start).
            assert stack.gateway.limits.max_subscriptions_per_connection == 9
        finally:
            later.stop()
