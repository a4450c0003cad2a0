"""Finding 2: a requiresAck message of a shared room is kept in the mailbox of every user
it is delivered to, however many there are on one gateway."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from roomgate_common import keys
from roomgate_common.redis_adapter import connect

from tests.gateway.conftest import Stack, recv_until, send

pytestmark = pytest.mark.timeout(180)

USERS = 1000


async def subscribed(stack: Stack, uid: str, gate: asyncio.Semaphore) -> Any:
    async with gate:
        ws = await stack.connect(stack.token(uid), open_timeout=30)
        await send(ws, {"type": "subscribe", "data": {"room": "tasks"}})
        await recv_until(  # (a personal room's `subscribed` may come late under load)
            ws, lambda m: m["type"] == "subscribed" and m["data"]["room"] == "tasks", timeout=30
        )
        return ws


@pytest.mark.gateway_settings(
    max_connections_per_ip=USERS + 10, durable_rooms="tasks", redis_pool_size=8
)
async def test_durable_delivery_to_1000_users_is_kept_in_every_mailbox(
    stack: Stack, capsys: Any
) -> None:
    """One durable message delivered to 1,000 users on one gateway lands in all 1,000 mailboxes (pool of 8)."""
    gate = asyncio.Semaphore(50)
    users = [str(1000 + i) for i in range(USERS)]
    clients = await asyncio.gather(*(subscribed(stack, uid, gate) for uid in users))
    drops = stack.gateway.metrics.drops
    loop = asyncio.get_running_loop()
    published = await stack.publish("tasks", "task_created", {"n": 1}, requires_ack=True)
    start = loop.time()
    got = await asyncio.gather(
        *(recv_until(ws, lambda m: m["type"] == "task_created", timeout=30) for ws in clients)
    )
    assert {m["id"] for m in got} == {published.id}
    redis = connect(stack.redis_url)
    try:
        kept = 0
        for _ in range(200):  # the filing is written after the delivery, within a few turns
            pipe = redis.pipeline(transaction=False)
            for uid in users:
                pipe.zscore(keys.mailbox(uid), published.id)
            kept = sum(score is not None for score in await pipe.execute())
            if kept == USERS:
                break
            await asyncio.sleep(0.05)
        filed_in = loop.time() - start
    finally:
        await redis.aclose()
    with capsys.disabled():
        print(f"\ndurable filing: {kept}/{USERS} mailboxes in {filed_in * 1000:.0f} ms")
    assert kept == USERS
    for reason in ("mailbox_file_failed", "mailbox_backlog"):
        assert drops.labels(reason)._value.get() == 0


async def test_batched_mailbox_writes_work_on_a_redis_cluster(redis_cluster: Any) -> None:
    """Filings and removals of many users (many slots) in one batch land on a cluster."""
    from roomgate_gateway.mailboxwrites import MailboxWrites
    from roomgate_gateway.metrics import GatewayMetrics

    redis = connect(redis_cluster.url)
    metrics = GatewayMetrics()
    try:
        writes = MailboxWrites(
            redis, metrics, cap=10, ttl_seconds=60, batch_max=1000, backlog_max=10_000
        )
        users = [str(i) for i in range(50)]
        for uid in users:
            writes.file(uid, f"m-{uid}", f"1 e {{}} {uid}", "normal")
            writes.file(uid, f"n-{uid}", f"2 e {{}} {uid}", "low")
        await writes.flush()
        for uid in users:
            writes.remove(uid, f"m-{uid}")
        await writes.flush()
        for uid in users:
            assert await redis.zrange(keys.mailbox(uid), 0, -1) == [f"n-{uid}".encode()]
        assert metrics.drops.labels("mailbox_file_failed")._value.get() == 0
        assert metrics.drops.labels("mailbox_unfile_failed")._value.get() == 0
    finally:
        await redis.aclose()


async def test_mailbox_writes_split_at_batch_max_and_drop_beyond_the_backlog(
    redis_url: str,
) -> None:
    """With MAILBOX_BATCH_MAX 2 and MAILBOX_BACKLOG_MAX 3, five filings in one turn: three written (two pipelines), two dropped and counted."""
    from roomgate_gateway.mailboxwrites import MailboxWrites
    from roomgate_gateway.metrics import GatewayMetrics

    redis = connect(redis_url)
    metrics = GatewayMetrics()
    try:
        writes = MailboxWrites(redis, metrics, cap=10, ttl_seconds=60, batch_max=2, backlog_max=3)
        for n in range(5):
            writes.file("42", f"m-{n}", f"{n + 1} e {{}}", "normal")
        assert writes.waiting == 3
        await writes.flush()
        assert await redis.zrange(keys.mailbox("42"), 0, -1) == [b"m-0", b"m-1", b"m-2"]
        assert metrics.drops.labels("mailbox_backlog")._value.get() == 2
        assert metrics.drops.labels("mailbox_file_failed")._value.get() == 0
        assert writes.waiting == 0
    finally:
        await redis.aclose()
