"""Finding 1: an ack flood from one user costs one pipeline per event-loop turn, not one
Redis call each, and cannot exhaust the gateway's Redis pool for everyone else; an
exhausted pool waits, then reads as busy, never as Redis down."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from roomgate_common import keys
from roomgate_common.errors import BusBusy
from roomgate_common.redis_adapter import connect, translate_errors

from tests.gateway.conftest import Stack, recv, send

pytestmark = pytest.mark.timeout(120)

WAITING = 300


@pytest.mark.gateway_settings(max_connections_per_ip=100, redis_pool_size=4)
async def test_an_ack_flood_leaves_other_clients_alone_and_empties_the_mailbox(
    stack: Stack,
) -> None:
    """300 real acks and 20,000 unknown ones from one user, while 20 others connect: every connect is welcomed, the mailbox ends empty, no write is lost."""
    for i in range(WAITING):
        await stack.publish("user-42", "task_created", {"n": i})
    flooder = await stack.connect(stack.token("42"), welcome=False)
    ids: list[str] = []
    while len(ids) < WAITING:
        msg = await recv(flooder)
        if msg["type"] == "task_created":
            ids.append(msg["id"])
        elif msg["type"] == "batch":
            ids += [m["id"] for m in msg["messages"] if m["type"] == "task_created"]
    acks = [json.dumps({"type": "ack", "ackId": i}) for i in ids]
    acks += [json.dumps({"type": "ack", "ackId": str(uuid.uuid4())}) for _ in range(20_000)]

    async def flood() -> None:
        for frame in acks:
            await flooder.send(frame)

    async def newcomer(n: int) -> Any:
        return await stack.connect(stack.token(str(500 + n)))  # asserts the welcome

    flooding = asyncio.create_task(flood())
    others = await asyncio.gather(*(newcomer(n) for n in range(20)))
    await flooding
    assert len(others) == 20
    redis = connect(stack.redis_url)
    try:
        for _ in range(200):
            if not await redis.zcard(keys.mailbox("42")):
                break
            await asyncio.sleep(0.05)
        assert await redis.zcard(keys.mailbox("42")) == 0
    finally:
        await redis.aclose()
    drops = stack.gateway.metrics.drops
    for reason in ("mailbox_unfile_failed", "mailbox_backlog"):
        assert drops.labels(reason)._value.get() == 0
    refused = stack.gateway.metrics.connects
    assert refused.labels("redis_unavailable")._value.get() == 0


async def test_an_exhausted_pool_waits_then_reads_as_busy_not_down(redis_url: str) -> None:
    """With its one pooled connection held, a command waits the pool timeout, then raises BusBusy (not BusUnavailable)."""
    redis = connect(redis_url, max_connections=1, pool_timeout=0.2)
    try:
        holder = asyncio.create_task(redis.blpop(["nothing-comes"], timeout=2))
        await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(BusBusy):
            async with translate_errors("test"):
                await redis.ping()
        assert loop.time() - start >= 0.15  # it waited for a connection first
        await holder
        assert await redis.ping()  # free again
    finally:
        await redis.aclose()


@pytest.mark.gateway_settings(redis_pool_size=2, redis_pool_timeout=0.3)
async def test_a_busy_pool_is_not_read_as_redis_down(stack: Stack) -> None:
    """With every pooled connection held: a client message is refused `unavailable` (the rate is not skipped), a connect counts as redis_busy, not redis_unavailable."""
    ws = await stack.connect(stack.token("42"))
    holders = [
        asyncio.create_task(stack.gateway.redis.blpop([f"nothing-{n}"], timeout=2))
        for n in range(2)
    ]
    await asyncio.sleep(0.2)
    await send(ws, {"type": "metrics_update", "room": "system", "data": {}})
    error = await recv(ws)
    assert (error["type"], error["data"]["code"]) == ("error", "unavailable")
    late = await stack.connect(stack.token("43"), welcome=False)
    await asyncio.wait_for(late.wait_closed(), 10)
    assert late.close_code == 1013
    await asyncio.gather(*holders)
    connects = stack.gateway.metrics.connects
    assert connects.labels("redis_busy")._value.get() == 1
    assert connects.labels("redis_unavailable")._value.get() == 0
    assert stack.gateway.metrics.drops.labels("rate_unchecked")._value.get() == 1
