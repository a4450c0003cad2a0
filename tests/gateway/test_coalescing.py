"""Write coalescing (coalescing.py): what one loop turn hands a connection leaves in one socket
write, as the very frames it would get one by one; deliveries are counted where they are
written, by every path (fan-out, replay, write-behind)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
from roomgate_common.publisher import Published, Publisher
from roomgate_common.redis_adapter import connect
from roomgate_gateway.codes import CloseCode
from roomgate_gateway.outbound import Outgoing

from tests.gateway.conftest import Stack, recv, recv_until, send
from tests.gateway.test_recovery import subscribe_since

pytestmark = pytest.mark.timeout(60)


def counter(stack: Stack, name: str) -> float:
    return float(getattr(stack.gateway.metrics, name)._value.get())


def publish_while_blocked(redis_url: str, room: str, count: int, pad: int = 0) -> list[Published]:
    """Publish ``count`` events from another thread while this thread's event loop (the
    gateway's) is blocked: they all wait in the gateway's subscriber socket at once, as a
    burst does on a busy gateway."""
    sent: list[Published] = []

    async def publish() -> None:
        redis = connect(redis_url)
        try:
            publisher = Publisher(redis, sender="test")
            for n in range(count):
                sent.append(await publisher.publish(room, "metrics_update", {"n": n}))
        finally:
            await redis.aclose()

    thread = threading.Thread(target=asyncio.run, args=(publish(),))
    thread.start()
    thread.join(30)
    time.sleep(0.1)  # the last PUBLISH reaches the gateway's socket (still blocked)
    assert len(sent) == count
    return sent


async def subscribed(stack: Stack, room: str = "system") -> Any:
    ws = await stack.connect()
    await send(ws, {"type": "subscribe", "data": {"room": room}})
    await recv_until(ws, lambda m: m["type"] == "subscribed" and m["data"]["room"] == room)
    return ws


async def test_a_burst_leaves_in_few_writes_as_the_same_frames(stack: Stack) -> None:
    """50 events arriving together: each client gets 50 separate event frames, in order (no
    `batch`: nothing a client sees changes), in a handful of socket writes instead of 50."""
    clients = [await subscribed(stack) for _ in range(3)]
    writes, deliveries = counter(stack, "socket_writes"), counter(stack, "deliveries")
    sent = publish_while_blocked(stack.redis_url, "system", 50)
    for ws in clients:
        got = [await recv(ws) for _ in sent]
        assert [m["type"] for m in got] == ["metrics_update"] * len(sent)
        assert [m["id"] for m in got] == [s.id for s in sent]
    assert counter(stack, "deliveries") - deliveries == 3 * len(sent)
    written = counter(stack, "socket_writes") - writes
    print(f"3 clients x {len(sent)} events: {written:.0f} socket writes")
    assert 3 <= written <= 3 * 5


async def test_steady_traffic_is_written_at_once_one_write_per_message(stack: Stack) -> None:
    """One event at a time: one write per client per event, each delivered before the next."""
    ws = await subscribed(stack)
    writes = counter(stack, "socket_writes")
    for n in range(5):
        sent = await stack.publish("system", "metrics_update", {"n": n})
        assert (await recv(ws))["id"] == sent.id
    assert counter(stack, "socket_writes") - writes == 5


async def test_replayed_messages_are_counted_as_deliveries(stack: Stack) -> None:
    """A recovery replay is delivered like the fan-out, so it is counted like it."""
    sent = [await stack.publish("system", "metrics_update", {"n": n}) for n in range(6)]
    ws = await stack.connect()
    deliveries = counter(stack, "deliveries")
    await subscribe_since(ws, "system", sent[1].offset, sent[0].epoch)
    assert (await recv(ws))["data"]["replayed"] == 4
    assert [(await recv(ws))["id"] for _ in range(4)] == [s.id for s in sent[2:]]
    assert counter(stack, "deliveries") - deliveries == 4


async def test_the_close_follows_what_the_turn_handed_over(stack: Stack) -> None:
    """A message staged in this turn and a close right after it: the message leaves first."""
    ws = await subscribed(stack)
    conn = next(iter(stack.gateway.connections))
    conn.send_message("token_expiring", {"expires_at": 1, "seconds_left": 0})  # staged
    await conn.close(CloseCode.SERVICE_RESTART)
    assert (await recv(ws))["type"] == "token_expiring"
    await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 1012


@pytest.mark.gateway_settings(outbound_queue_size=64)
async def test_what_a_turn_stages_is_bounded_like_the_queue(stack: Stack) -> None:
    """200 events handed to a connection in one turn: never more than OUTBOUND_QUEUE_SIZE
    wait staged (a full stage is written at once, so a socket that pushed back sends the
    rest to the bounded queue); the client gets all 200, in order."""
    ws = await subscribed(stack)
    conn = next(iter(stack.gateway.connections))
    most = 0
    for n in range(200):  # one turn: no await in between
        frame = json.dumps({"type": "metrics_update", "room": "system", "data": {"n": n}})
        conn.deliver(Outgoing(frame, "normal", room="system", offset=n + 1))
        staged = conn._staged
        most = max(most, len(staged) if isinstance(staged, list) else staged is not None)
    assert 0 < most <= 64
    assert [(await recv(ws))["data"]["n"] for _ in range(200)] == list(range(200))
