"""The store's recovery scan of a room's history (used when taking over an interrupted fire)."""

from __future__ import annotations

import time

import msgspec
from roomgate_common.envelope import make_envelope
from roomgate_common.publisher import Publisher
from roomgate_escalation.store import EscalationStore


async def _publish(publisher: Publisher, room: str, envelope_id: str) -> None:
    envelope = make_envelope("alert_escalated", sender="t", room=room, data={})
    await publisher.publish_envelope(msgspec.structs.replace(envelope, id=envelope_id))


async def test_history_scan_finds_misses_and_admits_ignorance(redis) -> None:
    """Found -> True; not among entries since the intent -> False; history trimmed past the
    intent without finding it -> None (unknown)."""
    store = EscalationStore(redis, timeline_max=10, retention_s=10)
    since = int(time.time() * 1000)
    publisher = Publisher(redis, sender="t")
    await _publish(publisher, "team-1", "a:esc:1")
    for i in range(5):
        await _publish(publisher, "team-1", f"other-{i}")
    assert await store.history_contains("team-1", since, "a:esc:1") is True
    assert await store.history_contains("team-1", since, "b:esc:1") is False
    assert await store.history_contains("team-9", since, "a:esc:1") is False  # empty room
    # Entries older than the intent (minus the skew margin) end the scan.
    assert await store.history_contains("team-1", since + 120_000, "a:esc:1") is False

    small = Publisher(redis, sender="t", history="*=3:0")
    for i in range(300):
        await _publish(small, "team-2", f"x-{i}")
    assert await store.history_contains("team-2", since, "gone:esc:1") is None
