"""Alerts triggered on the bus: the history stream of room ``alerts`` read through a
consumer group, shared by replicas, with a dead consumer's entries reclaimed."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from roomgate.escalation.v1 import escalation_pb2 as pb
from roomgate_common import keys
from roomgate_common.envelope import make_envelope
from roomgate_common.publisher import Publisher
from roomgate_escalation.policy import PolicyConfig
from roomgate_escalation.server import EscalationReplica
from roomgate_escalation.settings import EscalationSettings
from roomgate_tools.procs import RedisProcess, free_port

from tests.escalation.conftest import FAST, POLICY, escalation_counts, room_events, wait_for

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
STREAM = keys.room_history("alerts")


def protocol_alert(alert_id: Any = 789, **extra: Any) -> dict[str, Any]:
    """The alert of the protocol's example, escalating after 50 ms."""
    return {
        "alert_id": alert_id,
        "severity": "critical",
        "title": "High CPU usage detected",
        "description": "CPU usage exceeded 90% threshold",
        "agent_id": 123,
        "hostname": "web-server-01",
        "metric": {"name": "cpu_usage", "current_value": 94.7, "threshold": 90.0},
        "actions": [{"type": "escalate", "delay": 0.05, "target": "ops-team"}],
        **extra,
    }


async def publish(redis, type_: str, data: dict[str, Any], sender: str = "alert-manager") -> None:
    envelope = make_envelope(
        type_,
        sender=sender,
        room="alerts",
        data=data,
        metadata={"priority": "high", "traceparent": TRACEPARENT},
    )
    await Publisher(redis, sender=sender).publish_envelope(envelope)


async def pending(redis) -> int:
    info = await redis.xpending(STREAM, "escalation")
    return int(info["pending"])


async def test_bus_alert_is_applied_and_escalates_in_its_trace(make_replica, stub_for, redis):
    """An alert_triggered on the bus creates the alert; its escalation continues the trace."""
    replica = await make_replica()
    await publish(redis, "alert_triggered", protocol_alert())
    events = await wait_for(lambda: room_events(redis, "alerts", "alert_escalated"))
    assert events[0]["id"] == "789:esc:1"
    assert events[0]["data"]["alert"]["agent_id"] == 123
    assert events[0]["metadata"]["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]
    team = await wait_for(lambda: room_events(redis, "team-7"))
    assert [e["id"] for e in team] == ["789:esc:1"]
    got = (await stub_for(replica.port).Get(pb.GetRequest(alert_id="789"))).alert
    assert got.timeline[0].event == "triggered"
    assert got.timeline[0].by == "alert-manager"
    assert await wait_for(lambda: _zero(pending(redis)))
    # The service did not publish the bus trigger again.
    assert len(await room_events(redis, "alerts", "alert_triggered")) == 1


async def _zero(value) -> bool:
    return await value == 0


async def test_bus_skips_other_types_own_echo_and_bad_alerts(make_replica, stub_for, redis):
    """Other message types, the service's own alert_triggered echo and invalid alerts are
    acked without creating anything; a valid one after them is applied."""
    replica = await make_replica()
    await publish(redis, "alert_resolved", {"alert_id": "x"})
    await publish(redis, "alert_triggered", protocol_alert("own"), sender="escalation")
    await publish(redis, "alert_triggered", protocol_alert("bad", severity="urgent"))
    await publish(redis, "alert_triggered", {"alert_id": "n"} | {"title": []})
    await publish(redis, "alert_triggered", protocol_alert("good", actions=[]))
    stub = stub_for(replica.port)

    async def listed() -> list[str]:
        return [a.alert_id for a in (await stub.ListActive(pb.ListActiveRequest())).alerts]

    assert await wait_for(listed) == ["good"]
    assert await wait_for(lambda: _zero(pending(redis)))
    samples = {
        outcome: replica.registry.get_sample_value(
            "roomgate_escalation_bus_entries_total", {"outcome": outcome}
        )
        for outcome in ("skipped", "invalid", "applied")
    }
    assert samples == {"skipped": 2, "invalid": 2, "applied": 1}


async def test_bus_dedup_and_redelivery_are_idempotent(make_replica, stub_for, redis):
    """Two bus alerts with one dedup key make one alert; a redelivered entry changes nothing."""
    replica = await make_replica()
    await publish(redis, "alert_triggered", protocol_alert("b1", dedup_key="web-01/cpu"))
    await publish(redis, "alert_triggered", protocol_alert("b2", dedup_key="web-01/cpu"))
    stub = stub_for(replica.port)

    async def twice() -> bool:
        got = await stub.Get(pb.GetRequest(alert_id="b1"))
        return got.alert.trigger_count == 2

    await wait_for(twice)
    entries = await redis.xrange(STREAM)
    entry_id, fields = entries[0]
    await replica.consumer.handle(entry_id, fields)  # a redelivery
    got = (await stub.Get(pb.GetRequest(alert_id="b1"))).alert
    assert got.trigger_count == 2
    assert [a.alert_id for a in (await stub.ListActive(pb.ListActiveRequest())).alerts] == ["b1"]
    await wait_for(lambda: room_events(redis, "alerts", "alert_escalated"))
    assert escalation_counts(await room_events(redis, "alerts", "alert_escalated")) == {
        ("b1", 1): 1
    }


async def test_dead_consumers_pending_entry_is_reclaimed(make_replica, stub_for, redis):
    """An entry a dead consumer read but never acked is reclaimed (XAUTOCLAIM) and applied."""
    await redis.xgroup_create(STREAM, "escalation", id="$", mkstream=True)
    await publish(redis, "alert_triggered", protocol_alert("lost-1"))
    read = await redis.xreadgroup("escalation", "dead-replica", {STREAM: ">"}, count=10)
    assert len(read[0][1]) == 1
    assert await pending(redis) == 1

    replica = await make_replica(escalation_reclaim_idle_ms=300)
    stub = stub_for(replica.port)

    async def exists() -> bool:
        res = await stub.ListActive(pb.ListActiveRequest())
        return [a.alert_id for a in res.alerts] == ["lost-1"]

    await wait_for(exists)
    assert await wait_for(lambda: _zero(pending(redis)))
    assert (
        replica.registry.get_sample_value(
            "roomgate_escalation_bus_entries_total", {"outcome": "reclaimed"}
        )
        == 1
    )
    await wait_for(lambda: room_events(redis, "team-7", "alert_escalated"))


async def test_replicas_share_the_bus(make_replica, stub_for, redis):
    """Bus alerts are applied once each when three replicas read the same group."""
    replicas = [await make_replica() for _ in range(3)]
    for i in range(30):
        await publish(redis, "alert_triggered", protocol_alert(f"s{i}", actions=[]))
    stub = stub_for(replicas[0].port)

    async def all_there() -> bool:
        res = await stub.ListActive(pb.ListActiveRequest(limit=100))
        return len(res.alerts) == 30

    await wait_for(all_there)
    res = await stub.ListActive(pb.ListActiveRequest(limit=100))
    assert all(a.trigger_count == 1 for a in res.alerts)
    applied = sum(
        r.registry.get_sample_value("roomgate_escalation_bus_entries_total", {"outcome": "applied"})
        or 0
        for r in replicas
    )
    assert applied == 30


async def test_a_replica_started_before_redis_consumes_once_it_comes(escalation_auth, tmp_path):
    """Pods of a release start together: a replica whose Redis comes later does not crash;
    once Redis answers it creates the consumer group and applies what arrives."""
    later = RedisProcess(tmp_path / "redis", port=free_port(), aof=False)
    settings = EscalationSettings.from_env(
        redis_url=later.url,
        auth_addr=f"127.0.0.1:{escalation_auth.port}",
        escalation_listen="127.0.0.1:0",
        escalation_consumer_name="late",
        **FAST,
    )
    replica = EscalationReplica(settings, config=PolicyConfig.from_mapping(POLICY))
    await replica.start()
    redis = None
    try:
        later.start()
        redis = aioredis.Redis.from_url(later.url)

        async def group_created() -> bool:
            try:
                return any(g["name"] == b"escalation" for g in await redis.xinfo_groups(STREAM))
            except ResponseError:  # no stream yet
                return False

        await wait_for(group_created)
        await publish(redis, "alert_triggered", protocol_alert())
        events = await wait_for(lambda: room_events(redis, "alerts", "alert_escalated"))
        assert events[0]["id"] == "789:esc:1"
    finally:
        await replica.stop()
        if redis is not None:
            await redis.aclose()
        later.stop()
