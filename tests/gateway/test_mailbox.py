"""Offline mailboxes and acknowledged delivery: user-{id} messages wait per user until acked
(or their ttl passes, or the cap evicts them, low priority first), arrive in order before
live traffic on any gateway, and unacked messages are sent again on the same connection."""

from __future__ import annotations

import asyncio

import pytest
from roomgate_common import keys
from roomgate_common.publisher import Publisher
from roomgate_common.redis_adapter import connect

from tests.gateway.conftest import Stack, recv, recv_until, send
from tests.gateway.test_fanout import flatten, second_gateway


async def events(ws: object, count: int, type_: str = "task_created") -> list[dict[str, object]]:
    got: list[dict[str, object]] = []
    while len(got) < count:
        got += [m for m in flatten(await recv(ws)) if m["type"] == type_]  # type: ignore[arg-type]
    return got


async def test_offline_messages_wait_until_acked(stack: Stack) -> None:
    """Published while offline -> delivered in order at connect, marked requiresAck; acked ones are gone next time."""
    sent = [await stack.publish("user-42", "task_created", {"n": i}) for i in range(3)]
    ws = await stack.connect(stack.token("42"), welcome=False)
    assert (await recv(ws))["type"] == "welcome"
    got = await events(ws, 3)
    assert [m["id"] for m in got] == [s.id for s in sent]
    assert all(m["metadata"]["requiresAck"] for m in got)  # type: ignore[index]
    for m in got[:2]:
        await send(ws, {"type": "ack", "ackId": m["id"]})
    await asyncio.sleep(0.3)
    await ws.close()
    async with second_gateway(stack) as two:  # any gateway: the mailbox lives in Redis
        again = await two.connect(stack.token("42"), welcome=False)
        assert (await recv(again))["type"] == "welcome"
        assert [m["id"] for m in await events(again, 1)] == [sent[2].id]


async def test_mailbox_before_live_traffic_without_duplicates(stack: Stack) -> None:
    """Messages published during the connect arrive once each, mailbox first, in offset order."""
    for i in range(5):
        await stack.publish("user-42", "task_created", {"n": i})
    publishing = asyncio.create_task(_publish_many(stack, 5, start=5))
    ws = await stack.connect(stack.token("42"), welcome=False)
    await publishing
    got = await events(ws, 10)
    offsets = [m["metadata"]["offset"] for m in got]  # type: ignore[index]
    assert offsets == list(range(1, 11))


async def test_a_late_live_copy_of_a_mailbox_message_is_dropped(stack: Stack) -> None:
    """The mailbox is read on one Redis connection, the bus on another: a message published
    just before the connect can reach the gateway live after the mailbox was handed over."""
    sent = [await stack.publish("user-42", "task_created", {"n": i}) for i in range(2)]
    ws = await stack.connect(stack.token("42"), welcome=False)
    assert (await recv(ws))["type"] == "welcome"
    assert [m["id"] for m in await events(ws, 2)] == [s.id for s in sent]
    # The bus hands over offset 2 late, as the publisher's script sent it.
    _box, msgs, _low = keys.mailbox_keys("42")
    filed = await stack.gateway.redis.hget(msgs, sent[1].id)
    redis = connect(stack.redis_url)
    try:
        await redis.publish(keys.room_channel("user-42"), filed)
    finally:
        await redis.aclose()
    later = await stack.publish("user-42", "task_created", {"n": 2})
    assert [m["id"] for m in await events(ws, 1)] == [later.id]


async def _publish_many(stack: Stack, count: int, start: int) -> None:
    for i in range(start, start + count):
        await stack.publish("user-42", "task_created", {"n": i})


async def test_expired_messages_are_not_delivered_and_leave_the_mailbox(stack: Stack) -> None:
    """A mailbox message past its ttl is dropped at delivery and removed."""
    await stack.publish("user-42", "task_created", {"n": 0}, ttl=1)
    fresh = await stack.publish("user-42", "task_created", {"n": 1})
    await asyncio.sleep(1.2)
    ws = await stack.connect(stack.token("42"), welcome=False)
    await recv(ws)
    assert [m["id"] for m in await events(ws, 1)] == [fresh.id]
    redis = connect(stack.redis_url)
    for _ in range(50):
        if await redis.zcard(keys.mailbox("42")) == 1:
            break
        await asyncio.sleep(0.02)
    assert await redis.zcard(keys.mailbox("42")) == 1
    await redis.aclose()


async def test_cap_evicts_oldest_low_priority_first(stack: Stack) -> None:
    """Over the cap, the oldest low message goes first, then the oldest; evictions are reported."""
    redis = connect(stack.redis_url)
    publisher = Publisher(redis, sender="t", mailbox_cap=3)
    plan = [
        ("l1", "low"),
        ("n1", "normal"),
        ("l2", "low"),
        ("n2", "normal"),
        ("n3", "normal"),
        ("n4", "normal"),
    ]
    evicted = []
    ids = {}
    try:
        for name, priority in plan:
            published = await publisher.publish(
                "user-42", "task_created", {"name": name}, priority=priority
            )
            ids[published.id] = name
            evicted.append(published.mailbox_evicted)
        remaining = [ids[i.decode()] for i in await redis.zrange(keys.mailbox("42"), 0, -1)]
    finally:
        await redis.aclose()
    assert evicted == [0, 0, 0, 1, 1, 1]
    assert remaining == ["n2", "n3", "n4"]  # arrival order, even within one millisecond


@pytest.mark.gateway_settings(ack_timeout=0.3, ack_retries=2)
async def test_unacked_message_is_sent_again_then_given_up(stack: Stack) -> None:
    """No ack: the same message (same id) comes again after ack_timeout, ack_retries times."""
    ws = await stack.connect(stack.token("42"))
    sent = await stack.publish("user-42", "task_created", {"n": 1})
    copies = await events(ws, 3)
    assert {m["id"] for m in copies} == {sent.id}
    assert await recv(ws, timeout=0.8, default=None) is None  # given up on this connection
    assert stack.gateway.metrics.redeliveries._value.get() == 2


@pytest.mark.gateway_settings(ack_timeout=0.3, ack_retries=3)
async def test_ack_stops_the_resends(stack: Stack) -> None:
    """An ack before the timeout: no second copy; the mailbox is empty."""
    ws = await stack.connect(stack.token("42"))
    sent = await stack.publish("user-42", "task_created", {"n": 1})
    [first] = await events(ws, 1)
    await send(ws, {"type": "ack", "ackId": first["id"]})
    assert await recv(ws, timeout=0.8, default=None) is None
    redis = connect(stack.redis_url)
    assert await redis.zcard(keys.mailbox("42")) == 0
    await redis.aclose()
    assert first["id"] == sent.id


async def test_acked_delivery_of_a_shared_room_survives_a_reconnect(stack: Stack) -> None:
    """A requiresAck message of a shared room, delivered but not acked, comes back from the mailbox."""
    ws = await stack.connect(stack.token("42"))
    await send(ws, {"type": "subscribe", "data": {"room": "system"}})
    await recv(ws)
    sent = await stack.publish(
        "system", "task_created", {"n": 1}, requires_ack=True, priority="high"
    )
    [got] = await events(ws, 1)
    assert got["id"] == sent.id
    await asyncio.sleep(0.3)  # let the gateway file it
    await ws.close()
    again = await stack.connect(stack.token("42"), welcome=False)
    await recv(again)
    [back] = await events(again, 1)
    assert back["id"] == sent.id
    await send(again, {"type": "ack", "ackId": sent.id})
    redis = connect(stack.redis_url)
    for _ in range(50):
        if await redis.zcard(keys.mailbox("42")) == 0:
            break
        await asyncio.sleep(0.02)
    assert await redis.zcard(keys.mailbox("42")) == 0
    await redis.aclose()


async def test_mailbox_overflow_is_reported_at_connect(stack: Stack) -> None:
    """A user offline past the mailbox cap learns how many messages it missed (recovered: false)."""
    redis = connect(stack.redis_url)
    publisher = Publisher(redis, sender="t", mailbox_cap=2)
    sent = [await publisher.publish("user-42", "task_created", {"n": i}) for i in range(5)]
    await redis.aclose()
    ws = await stack.connect(stack.token("42"), welcome=False)
    assert (await recv(ws))["type"] == "welcome"
    user_room = await recv_until(ws, lambda m: m["type"] == "subscribed" and m["room"] == "user-42")
    assert user_room["data"]["mailbox"] == 2
    assert user_room["data"]["recovered"] is False
    assert user_room["data"]["missed"] == 3
    assert [m["id"] for m in await events(ws, 2)] == [s.id for s in sent[3:]]


@pytest.mark.gateway_settings(durable_rooms="alerts,task-*")
async def test_durable_rooms_require_acks_and_survive_reconnects(stack: Stack) -> None:
    """In a durable room every message requires an ack and waits in the user's mailbox until acked."""
    ws = await stack.connect(stack.token("42", perms=("view_tasks",)))
    await send(ws, {"type": "subscribe", "data": {"room": "task-9"}})
    await recv(ws)
    sent = await stack.gateway.publisher.publish("task-9", "task_created", {"n": 1})
    [got] = await events(ws, 1)
    assert got["metadata"]["requiresAck"] is True  # type: ignore[index]
    await asyncio.sleep(0.3)
    await ws.close()
    again = await stack.connect(stack.token("42", perms=("view_tasks",)), welcome=False)
    await recv(again)
    [back] = await events(again, 1)
    assert back["id"] == sent.id


async def test_an_untouched_mailbox_expires(stack: Stack) -> None:
    """Every write renews the mailbox's lifetime to MAILBOX_TTL; left alone, it expires."""
    redis = connect(stack.redis_url)
    try:
        await Publisher(redis, sender="t", mailbox_ttl=100).publish("user-42", "task_created", {})
        ttls = [await redis.pttl(key) for key in keys.mailbox_keys("42")[:2]]
    finally:
        await redis.aclose()
    assert all(0 < ttl <= 100_000 for ttl in ttls)
