"""The demo feed (pure): a seeded fleet over simulated time produces every kind of event the
console shows, with types the publish API accepts."""

from __future__ import annotations

import random
from collections import Counter

from roomgate_gateway.protocol import EVENT_TYPES
from roomgate_tools.demo import HOSTS, DemoFeed


def run(seconds: int, seed: int = 1) -> list[tuple[str, str, dict[str, object]]]:
    feed = DemoFeed(rng=random.Random(seed))
    return [e for t in range(seconds) for e in feed.step(float(t))]


def test_feed_covers_agents_tasks_alerts_and_system() -> None:
    """Two minutes of feed: every agent reports, tasks run to the end, alerts fire with unique ids."""
    events = run(120)
    kinds = Counter((room, type_) for room, type_, _ in events)
    assert {t for _, t, _ in events} <= set(EVENT_TYPES)
    hosts = {d["hostname"] for r, t, d in events if t == "agent_status"}
    assert hosts == set(HOSTS)
    assert kinds["tasks", "task_created"] >= 10
    assert kinds["tasks", "task_progress"] > kinds["tasks", "task_created"]
    ends = kinds["tasks", "task_completed"] + kinds["tasks", "task_failed"]
    assert ends >= kinds["tasks", "task_created"] - 4  # at most four still running
    alerts = [d["alert_id"] for _, t, d in events if t == "alert_triggered"]
    assert len(alerts) >= 5 and len(set(alerts)) == len(alerts)
    assert kinds["system", "metrics_update"] >= 15


def test_metrics_stay_percentages_and_the_feed_is_deterministic() -> None:
    """CPU/memory/disk stay within 0-100 %; the same seed gives the same feed (alert ids aside: they carry a run id)."""
    for _, t, d in run(300):
        if t == "agent_status":
            assert all(0 <= float(d[k]) <= 100 for k in ("cpu_usage", "memory_usage", "disk_usage"))  # type: ignore[arg-type]
    assert run(60, seed=3) == run(60, seed=3)
