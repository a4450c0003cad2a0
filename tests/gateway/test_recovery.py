"""Recovery on subscribe: `since {offset, epoch}` replays the room's history after the offset,
then continues live with no gap and no duplicate, even while messages are being published."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from roomgate_common.publisher import Publisher
from roomgate_common.redis_adapter import connect
from websockets.asyncio.client import ClientConnection

from tests.gateway.conftest import Stack, recv, recv_until, send, small_buffer_client
from tests.gateway.test_fanout import flatten


async def offsets_of(ws: object, count: int, room: str = "system") -> list[int]:
    got: list[int] = []
    while len(got) < count:
        for msg in flatten(await recv(ws)):  # type: ignore[arg-type]
            if msg.get("room") == room and msg["type"] == "metrics_update":
                got.append(int(msg["metadata"]["offset"]))  # type: ignore[index]
    return got


async def subscribe_since(ws: ClientConnection, room: str, offset: int, epoch: str) -> None:
    """Subscribe ``room`` asking for what came after ``offset`` of ``epoch``."""
    await send(
        ws,
        {"type": "subscribe", "data": {"room": room, "since": {"offset": offset, "epoch": epoch}}},
    )


async def test_replay_after_offset_then_live(stack: Stack) -> None:
    """Missed messages come back in order with recovered=true, then live ones follow."""
    sent = [await stack.publish("system", "metrics_update", {"n": i}) for i in range(5)]
    ws = await stack.connect()
    await subscribe_since(ws, "system", 2, sent[0].epoch)
    ok = await recv(ws)
    assert ok["type"] == "subscribed"
    assert ok["data"]["recovered"] is True
    assert ok["data"]["replayed"] == 3
    replayed = [await recv(ws) for _ in range(3)]
    assert [m["id"] for m in replayed] == [s.id for s in sent[2:]]
    live = await stack.publish("system", "metrics_update", {"n": 5})
    assert (await recv(ws))["metadata"]["offset"] == live.offset == 6


async def test_epoch_change_means_not_recovered(stack: Stack) -> None:
    """An unknown epoch (history lost) answers recovered=false so the client reloads state."""
    await stack.publish("system", "metrics_update", {})
    ws = await stack.connect()
    await subscribe_since(ws, "system", 1, "not-this-one")
    ok = await recv(ws)
    assert ok["data"]["recovered"] is False


async def test_gap_beyond_history_is_reported_with_the_count_missed(stack: Stack) -> None:
    """When the gap fell out of the bounded history: recovered=false and how many were missed."""
    redis = connect(stack.redis_url)
    publisher = Publisher(redis, sender="t", history="*=10:0")
    sent = [await publisher.publish("tasks", "metrics_update", {"n": i}) for i in range(300)]
    await redis.aclose()
    ws = await stack.connect()
    await subscribe_since(ws, "tasks", 5, sent[0].epoch)
    ok = await recv(ws)
    assert ok["data"]["recovered"] is False
    assert ok["data"]["missed"] == 295


async def test_switch_from_replay_to_live_is_race_free(stack: Stack) -> None:
    """Publishing continuously while a client recovers: offsets arrive consecutive, no gap, no duplicate."""
    first = await stack.publish("system", "metrics_update", {"n": 0})
    stop = asyncio.Event()

    async def publish_forever() -> int:
        redis = connect(stack.redis_url)
        publisher = Publisher(redis, sender="t")
        count = 1
        while not stop.is_set():
            await publisher.publish("system", "metrics_update", {"n": count})
            count += 1
            await asyncio.sleep(0.002)  # stay well inside the 1000-entry history
        await redis.aclose()
        return count

    producer = asyncio.create_task(publish_forever())
    await asyncio.sleep(0.2)
    ws = await stack.connect()
    await subscribe_since(ws, "system", first.offset, first.epoch)
    ok = await recv_until(ws, lambda m: m["type"] == "subscribed")
    assert ok["data"]["recovered"] is True
    await asyncio.sleep(0.3)
    stop.set()
    total = await producer
    offsets = await offsets_of(ws, total - 1)
    assert offsets == list(range(first.offset + 1, first.offset + total))


async def test_a_late_live_copy_of_a_replayed_message_is_dropped(stack: Stack) -> None:
    """History is read on one Redis connection, the bus on another: a message the replay
    already delivered can still arrive live afterwards (seen in CI as a duplicate offset).
    The client gets it once."""
    from roomgate_common import keys

    sent = [await stack.publish("system", "metrics_update", {"n": i}) for i in range(3)]
    ws = await stack.connect()
    await subscribe_since(ws, "system", 1, sent[0].epoch)
    ok = await recv(ws)
    assert ok["data"]["replayed"] == 2
    assert await offsets_of(ws, 2) == [2, 3]
    # The bus delivers offset 3 late, exactly as the publisher's script sent it.
    history = await stack.gateway.redis.xrange(keys.room_history("system"), min="3-1", max="3-1")
    late = b"3 %s %s" % (sent[0].epoch.encode(), history[0][1][b"m"])
    redis = connect(stack.redis_url)
    try:
        await redis.publish(keys.room_channel("system"), late)
    finally:
        await redis.aclose()
    await stack.publish("system", "metrics_update", {"n": 3})
    assert await offsets_of(ws, 1) == [4]
    await stack.publish("system", "metrics_update", {"n": 4})
    assert await offsets_of(ws, 1) == [5]  # the guard is gone once the stream is past it


async def test_a_room_is_joined_once_redis_confirmed_the_subscription(stack: Stack) -> None:
    """SUBSCRIBE and the history read go over two Redis connections: the gateway must not
    read history (or confirm `subscribed`) before Redis has the subscription, or a message
    published in between would be in neither. Redis is paused so the confirmation waits."""
    from roomgate_common import keys

    bus = stack.gateway.bus
    redis = connect(stack.redis_url)
    try:
        await redis.execute_command("CLIENT", "PAUSE", "600", "ALL")
        first = asyncio.create_task(bus.join("system"))
        second = asyncio.create_task(bus.join("system"))  # a second member of the same room
        await asyncio.sleep(0.3)
        assert not first.done() and not second.done()  # sent, not yet confirmed
        await asyncio.wait_for(asyncio.gather(first, second), 5)
        counts = await redis.pubsub_numsub(keys.room_channel("system"))
        assert counts == [(keys.room_channel("system").encode(), 1)]
    finally:
        await redis.aclose()
    await bus.leave("system")
    await bus.leave("system")


async def test_join_waits_for_the_confirmation_at_most_its_timeout(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis that does not confirm within SUBSCRIBE_CONFIRM_TIMEOUT does not hold the
    subscribe forever: join goes on (logged); the subscription lands when Redis answers."""
    from roomgate_common import keys
    from roomgate_gateway import bus as bus_module

    monkeypatch.setattr(bus_module, "SUBSCRIBE_CONFIRM_TIMEOUT", 0.2)
    redis = connect(stack.redis_url)
    try:
        await redis.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        # Redis answers after 1.5 s; join must be back long before (the 0.2 s timeout).
        await asyncio.wait_for(stack.gateway.bus.join("system"), 1.0)
        assert "no subscribe confirmation from redis" in caplog.text
        counts = await redis.pubsub_numsub(keys.room_channel("system"))  # after the pause
        assert counts == [(keys.room_channel("system").encode(), 1)]
    finally:
        await redis.aclose()
    await stack.gateway.bus.leave("system")


async def test_offsets_let_a_live_client_detect_gaps(stack: Stack) -> None:
    """Live messages carry consecutive offsets per room (a jump means a gap)."""
    ws = await stack.connect()
    await send(ws, {"type": "subscribe", "data": {"room": "system"}})
    await recv(ws)
    for i in range(10):
        await stack.publish("system", "metrics_update", {"n": i})
    assert await offsets_of(ws, 10) == list(range(1, 11))


async def test_catch_up_after_the_bus_missed_messages(stack: Stack) -> None:
    """Messages published while the gateway's subscriber was away reach clients from history, once."""
    from roomgate_common import keys

    ws = await stack.connect()
    await send(ws, {"type": "subscribe", "data": {"room": "system"}})
    await recv(ws)
    await stack.publish("system", "metrics_update", {"n": 1})
    assert (await recv(ws))["metadata"]["offset"] == 1
    bus = stack.gateway.bus
    await bus._pubsub.unsubscribe(keys.room_channel("system"))  # the subscriber "loses" the room
    await asyncio.sleep(0.1)
    for n in (2, 3, 4):
        await stack.publish("system", "metrics_update", {"n": n})
    assert await recv(ws, timeout=0.3, default=None) is None  # nothing arrived live
    await bus._pubsub.subscribe(keys.room_channel("system"))
    await stack.gateway.catch_up()
    assert await offsets_of(ws, 3) == [2, 3, 4]
    await stack.publish("system", "metrics_update", {"n": 5})
    assert await offsets_of(ws, 1) == [5]


async def test_since_on_a_room_already_joined_resyncs(stack: Stack) -> None:
    """subscribe with `since` on a room the client is in replays what it missed (a resync)."""
    ws = await stack.connect()
    await send(ws, {"type": "subscribe", "data": {"room": "system"}})
    await recv(ws)
    sent = [await stack.publish("system", "metrics_update", {"n": i}) for i in range(3)]
    assert await offsets_of(ws, 3) == [1, 2, 3]
    await subscribe_since(ws, "system", 1, sent[0].epoch)
    ok = await recv(ws)
    assert ok["data"]["recovered"] is True
    assert ok["data"]["replayed"] == 2
    assert await offsets_of(ws, 2) == [2, 3]


async def test_history_is_bounded_by_age_per_room_pattern(redis_url: str) -> None:
    """Rooms matching a pattern keep their own bounds; entries past the age bound are trimmed and not replayed."""
    from roomgate_common import keys
    from roomgate_common.history import HistoryPolicy

    from tests.gateway.conftest import running_stack

    spec = "task-*=100:1,*=1000:3600"
    async with running_stack(redis_url, history=spec) as stack:
        redis = connect(redis_url)
        publisher = Publisher(redis, sender="t", history=HistoryPolicy.parse(spec))
        old = [await publisher.publish("task-7", "task_progress", {"n": i}) for i in range(3)]
        kept = await publisher.publish("tasks", "task_progress", {"n": 0})
        await asyncio.sleep(1.2)
        ws = await stack.connect()
        await subscribe_since(ws, "task-7", 1, old[0].epoch)
        ok = await recv(ws)
        assert ok["data"]["recovered"] is False  # the gap is older than task-*'s 1 s
        assert ok["data"]["missed"] == 2
        await publisher.publish("task-7", "task_progress", {"n": 3})
        assert await redis.xlen(keys.room_history("task-7")) == 1  # the expired head is trimmed
        assert await redis.xlen(keys.room_history("tasks")) == 1  # other rooms keep theirs
        assert 0 < await redis.pttl(keys.room_history("task-7")) <= 1000  # idle history expires
        assert kept.offset == 1
        await redis.aclose()


def _events(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """A frame's room events; a `batch` never holds another `batch`."""
    if frame["type"] != "batch":
        return [frame]
    assert all(m["type"] != "batch" for m in frame["messages"])
    return list(frame["messages"])


async def test_a_long_replay_leaves_in_batch_frames(stack: Stack) -> None:
    """More than OUTBOUND_BATCH_MAX replayed messages: `batch` frames of at most that many, in
    order, every one counted as a delivery; a short replay stays one frame per message."""
    sent = [await stack.publish("system", "metrics_update", {"n": n}) for n in range(26)]
    ws = await stack.connect()
    deliveries = stack.gateway.metrics.deliveries._value.get()
    await subscribe_since(ws, "system", sent[0].offset, sent[0].epoch)
    assert (await recv(ws))["data"]["replayed"] == 25
    frames = []
    got: list[str] = []
    while len(got) < 25:
        frames.append(await recv(ws))
        got += [m["id"] for m in _events(frames[-1])]
    assert got == [s.id for s in sent[1:]]
    most = stack.settings.outbound_batch_max
    assert [len(f.get("messages", [f])) for f in frames] == [most, most, 25 - 2 * most]
    assert stack.gateway.metrics.deliveries._value.get() - deliveries == 25


@pytest.mark.gateway_settings(outbound_queue_size=4096)
async def test_a_long_replay_to_a_stalled_client_is_never_nested(stack: Stack) -> None:
    """A client that stopped reading (its socket full, later messages queued) subscribes
    with `since`: the replay's batch frames wait in its queue and leave as they are (never
    inside another `batch`), in order, nothing lost."""
    sent = [await stack.publish("system", "metrics_update", {"n": n}) for n in range(200)]
    ws = await small_buffer_client(stack)
    await recv_until(ws, lambda m: m["type"] == "welcome")
    await send(ws, {"type": "subscribe", "data": {"room": "tasks"}})
    await recv_until(ws, lambda m: m["type"] == "subscribed" and m["data"]["room"] == "tasks")
    ws.transport.pause_reading()  # type: ignore[attr-defined]
    conn = next(iter(stack.gateway.connections))
    tasks_sent = 0
    while not conn._busy:  # until its socket is full and later messages wait in its queue
        await stack.publish("tasks", "task_progress", {"n": tasks_sent, "pad": "x" * 16000})
        tasks_sent += 1
        assert tasks_sent < 2000
    await subscribe_since(ws, "system", sent[0].offset, sent[0].epoch)
    await asyncio.sleep(0.2)  # the gateway reads the subscribe and queues the replay
    ws.transport.resume_reading()  # type: ignore[attr-defined]
    got: list[str] = []
    tasks = 0
    while len(got) < 199 or tasks < tasks_sent:
        for m in _events(await recv(ws)):
            if m["type"] == "metrics_update":
                got.append(m["id"])
            tasks += m["type"] == "task_progress"
    assert got == [s.id for s in sent[1:]]
    assert tasks == tasks_sent
