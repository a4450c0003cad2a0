"""The resilient client's bookkeeping with values: dedupe by id, offsets per room, gap
detection and resync with `since`, failed recoveries, backoff bounds, batch unpacking."""

from __future__ import annotations

import base64
import json
import random
import zlib
from typing import Any

from roomgate_tools.client import RoomgateClient


class FakeLink:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))


def event(room: str, offset: int, epoch: str = "e1", id_: str | None = None) -> dict[str, Any]:
    return {
        "id": id_ or f"{room}-{offset}",
        "type": "metrics_update",
        "room": room,
        "metadata": {"offset": offset, "epoch": epoch},
    }


def subscribed(room: str, **data: Any) -> dict[str, Any]:
    return {"type": "subscribed", "data": {"room": room, **data}}


async def feed(client: RoomgateClient, link: FakeLink, *messages: dict[str, Any]) -> None:
    for msg in messages:
        await client._on_message(link, msg)  # type: ignore[arg-type]


async def test_duplicates_are_dropped_by_id_and_offsets_tracked() -> None:
    """A message seen before (by id) is counted as a duplicate and not kept twice."""
    client, link = RoomgateClient("ws://x/ws", "t", rooms=["system"]), FakeLink()
    await feed(client, link, subscribed("system"), event("system", 1), event("system", 2))
    await feed(client, link, event("system", 2))
    assert client.offsets("system") == [1, 2]
    assert client.duplicates == 1
    assert (client.rooms["system"].offset, client.rooms["system"].epoch) == (2, "e1")


async def test_a_gap_resyncs_the_room_from_the_last_offset() -> None:
    """An offset jump within the epoch: unsubscribe + subscribe since the last offset; events until the answer are left to the replay."""
    client, link = RoomgateClient("ws://x/ws", "t", rooms=["tasks"]), FakeLink()
    await feed(client, link, subscribed("tasks"), event("tasks", 1), event("tasks", 4))
    assert link.sent == [
        {"type": "unsubscribe", "data": {"room": "tasks"}},
        {"type": "subscribe", "data": {"room": "tasks", "since": {"offset": 1, "epoch": "e1"}}},
    ]
    await feed(client, link, event("tasks", 5))  # still in flight before the answer: dropped
    await feed(client, link, subscribed("tasks", recovered=True, epoch="e1", replayed=4))
    await feed(client, link, *(event("tasks", n) for n in (2, 3, 4, 5)))
    assert client.offsets("tasks") == [1, 2, 3, 4, 5]


async def test_failed_recovery_is_recorded_and_tracking_restarts() -> None:
    """recovered=false is kept with the count missed; the next messages are taken as they come."""
    client, link = RoomgateClient("ws://x/ws", "t", rooms=["tasks"]), FakeLink()
    await feed(client, link, subscribed("tasks"), event("tasks", 1))
    await feed(client, link, subscribed("tasks", recovered=False, epoch="e1", missed=300))
    await feed(client, link, event("tasks", 302))
    assert client.rooms["tasks"].lost == [("e1", 300)]
    assert client.offsets("tasks") == [1, 302]
    assert link.sent == []


async def test_a_new_epoch_is_not_a_gap() -> None:
    """Offsets restart with a new epoch: no resync, the new epoch is followed."""
    client, link = RoomgateClient("ws://x/ws", "t", rooms=["system"]), FakeLink()
    await feed(client, link, subscribed("system"), event("system", 9), event("system", 1, "e2"))
    assert link.sent == []
    assert (client.rooms["system"].offset, client.rooms["system"].epoch) == (1, "e2")


async def test_batch_and_compressed_frames_are_unpacked() -> None:
    """Outbound `batch` and `compressed` frames yield their room events in order."""
    from roomgate_tools.client import _unpack

    packed = base64.b64encode(zlib.compress(json.dumps(event("system", 3)).encode())).decode()
    frame = {
        "type": "batch",
        "messages": [
            event("system", 1),
            event("system", 2),
            {"type": "compressed", "data": packed},
        ],
    }
    assert [m["metadata"]["offset"] for m in _unpack(frame)] == [1, 2, 3]


def test_backoff_has_full_jitter_within_bounds() -> None:
    """Backoff grows exponentially to the cap, randomised (full jitter), never below half the minimum."""
    client = RoomgateClient(
        "ws://x/ws", "t", backoff_min=0.1, backoff_max=2.0, rng=random.Random(7)
    )
    delays = [client._backoff(attempt) for attempt in range(12) for _ in range(20)]
    assert min(delays) >= 0.05
    assert max(delays) <= 2.0
    assert len({round(d, 3) for d in delays}) > 100
