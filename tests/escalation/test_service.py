"""The escalation service against a real Redis and real gRPC servers on loopback."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import grpc
import pytest
from roomgate.escalation.v1 import escalation_pb2 as pb
from roomgate_common import keys

from tests.escalation.conftest import escalation_counts, room_events, wait_for


def _ms(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def action(delay: float, target: str) -> pb.EscalateAction:
    return pb.EscalateAction(delay_seconds=delay, target=target)


async def test_escalation_fires_on_time(make_replica, stub_for, redis) -> None:
    """An unacknowledged alert escalates after its delay into alerts and the target room."""
    replica = await make_replica()
    stub = stub_for(replica.port)
    res = await stub.Trigger(
        pb.TriggerRequest(
            alert_id="789",
            severity="critical",
            title="High CPU usage detected",
            hostname="web-server-01",
            metric_json='{"name": "cpu_usage", "current_value": 94.7}',
            actions=[action(0.15, "ops-team")],
        )
    )
    assert res.created
    assert res.alert.state == pb.ALERT_STATE_TRIGGERED
    assert res.alert.plan[0].targets == ["team-7"]
    triggered = await room_events(redis, "alerts", "alert_triggered")
    assert [e["id"] for e in triggered] == ["789:trig:1"]
    assert triggered[0]["data"]["metric"]["current_value"] == 94.7

    escalated = await wait_for(lambda: room_events(redis, "alerts", "alert_escalated"))
    event = escalated[0]
    assert event["id"] == "789:esc:1"
    assert event["data"]["level"] == 1
    assert event["data"]["target"] == "team-7"
    assert event["data"]["alert"]["hostname"] == "web-server-01"
    assert event["metadata"]["priority"] == "high"
    lag = _ms(event["data"]["escalated_at"]) - _ms(event["data"]["due_at"])
    assert 0 <= lag < 5000
    created = res.alert.created_at.ToMilliseconds()
    assert _ms(event["data"]["due_at"]) == created + 150
    team = await wait_for(lambda: room_events(redis, "team-7", "alert_escalated"))
    assert [e["id"] for e in team] == ["789:esc:1"]

    got = (await stub.Get(pb.GetRequest(alert_id="789"))).alert
    assert got.state == pb.ALERT_STATE_ESCALATED
    assert got.levels_fired == 1
    assert [t.event for t in got.timeline] == ["triggered", "escalated"]
    assert got.timeline[1].targets == ["team-7"]
    assert not got.HasField("next_escalation_at")
    assert await redis.zcard(keys.ESC_DUE) == 0


async def test_policy_levels_fire_in_order_then_stop(make_replica, stub_for, redis) -> None:
    """The default policy's two levels fire in order, each into its targets, then nothing."""
    replica = await make_replica()
    stub = stub_for(replica.port)
    await stub.Trigger(pb.TriggerRequest(alert_id="a1", severity="critical", title="disk"))

    async def two() -> list:
        events = await room_events(redis, "alerts", "alert_escalated")
        return events if len(events) >= 2 else []

    events = await wait_for(two)
    assert [e["id"] for e in events] == ["a1:esc:1", "a1:esc:2"]
    for room in ("role-oncall_lead", "user-42"):
        in_room = await wait_for(lambda r=room: room_events(redis, r))
        assert [e["id"] for e in in_room] == ["a1:esc:2"]
    await asyncio.sleep(0.3)
    assert len(await room_events(redis, "alerts", "alert_escalated")) == 2
    got = (await stub.Get(pb.GetRequest(alert_id="a1"))).alert
    assert got.levels_fired == 2
    assert [lv.fired for lv in got.plan] == [True, True]


async def test_acknowledge_before_delay_cancels(make_replica, stub_for, redis) -> None:
    """Acknowledging before the delay stops escalation; a second acknowledge is a no-op."""
    replica = await make_replica()
    stub = stub_for(replica.port)
    await stub.Trigger(
        pb.TriggerRequest(
            alert_id="a2", severity="high", title="t", actions=[action(0.4, "team-3")]
        )
    )
    ack = await stub.Acknowledge(pb.AcknowledgeRequest(alert_id="a2", by="42"))
    assert ack.changed
    assert ack.alert.state == pb.ALERT_STATE_ACKNOWLEDGED
    assert ack.alert.acknowledged_by == "42"
    again = await stub.Acknowledge(pb.AcknowledgeRequest(alert_id="a2", by="43"))
    assert not again.changed
    assert again.alert.acknowledged_by == "42"
    await asyncio.sleep(0.8)
    assert await room_events(redis, "alerts", "alert_escalated") == []
    acks = await room_events(redis, "alerts", "alert_acknowledged")
    assert [(e["id"], e["data"]["by"]) for e in acks] == [("a2:ack", "42")]
    assert await redis.zcard(keys.ESC_DUE) == 0


async def test_acknowledge_after_escalation_reaches_escalated_rooms(
    make_replica, stub_for, redis
) -> None:
    """After an escalation the acknowledgement goes to alerts and the escalated targets."""
    replica = await make_replica()
    stub = stub_for(replica.port)
    await stub.Trigger(
        pb.TriggerRequest(
            alert_id="a3",
            severity="critical",
            title="t",
            actions=[action(0.05, "team-3"), action(30, "team-4")],
        )
    )

    async def level_recorded() -> bool:
        return (await stub.Get(pb.GetRequest(alert_id="a3"))).alert.levels_fired == 1

    await wait_for(level_recorded)
    await stub.Acknowledge(pb.AcknowledgeRequest(alert_id="a3", by="7"))
    assert [e["id"] for e in await room_events(redis, "team-3", "alert_acknowledged")] == ["a3:ack"]
    assert await room_events(redis, "team-4") == []
    got = (await stub.Get(pb.GetRequest(alert_id="a3"))).alert
    assert [t.event for t in got.timeline] == ["triggered", "escalated", "acknowledged"]
    assert got.timeline[2].by == "7"


async def test_resolve_is_idempotent_and_final(make_replica, stub_for, redis) -> None:
    """Resolve closes the alert once; later acks change nothing; its id cannot be reused."""
    replica = await make_replica()
    stub = stub_for(replica.port)
    await stub.Trigger(
        pb.TriggerRequest(alert_id="r1", severity="low", title="t", actions=[action(0.3, "user-5")])
    )
    res = await stub.Resolve(pb.ResolveRequest(alert_id="r1", by="svc-1"))
    assert res.changed
    assert res.alert.state == pb.ALERT_STATE_RESOLVED
    assert not (await stub.Resolve(pb.ResolveRequest(alert_id="r1", by="svc-1"))).changed
    assert not (await stub.Acknowledge(pb.AcknowledgeRequest(alert_id="r1", by="1"))).changed
    assert [e["id"] for e in await room_events(redis, "alerts", "alert_resolved")] == ["r1:res"]
    assert await room_events(redis, "alerts", "alert_acknowledged") == []
    assert (await stub.ListActive(pb.ListActiveRequest())).alerts == []
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Trigger(pb.TriggerRequest(alert_id="r1", severity="low", title="t"))
    assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS
    ttl = await redis.ttl(keys.esc_alert("r1"))
    assert 0 < ttl <= 7 * 24 * 3600
    await asyncio.sleep(0.5)
    assert await room_events(redis, "alerts", "alert_escalated") == []


async def test_dedup_key_updates_the_open_alert(make_replica, stub_for, redis) -> None:
    """A second trigger with the same dedup key updates the open alert; after resolve a new
    alert starts."""
    replica = await make_replica()
    stub = stub_for(replica.port)
    first = await stub.Trigger(
        pb.TriggerRequest(
            alert_id="d1", severity="critical", title="cpu 91", dedup_key="web-1/cpu", policy="slow"
        )
    )
    second = await stub.Trigger(
        pb.TriggerRequest(
            alert_id="d2", severity="critical", title="cpu 97", dedup_key="web-1/cpu", policy="slow"
        )
    )
    assert first.created and not second.created
    assert second.alert.alert_id == "d1"
    assert second.alert.trigger_count == 2
    assert second.alert.title == "cpu 97"
    assert json.loads(second.alert.data_json)["alert_id"] == "d1"
    active = (await stub.ListActive(pb.ListActiveRequest())).alerts
    assert [a.alert_id for a in active] == ["d1"]
    got = (await stub.Get(pb.GetRequest(alert_id="d1"))).alert
    assert [t.event for t in got.timeline] == ["triggered", "retriggered"]
    assert await redis.zcard(keys.ESC_DUE) == 1  # one timer, not two
    await stub.Resolve(pb.ResolveRequest(alert_id="d1", by="1"))
    third = await stub.Trigger(
        pb.TriggerRequest(alert_id="d3", severity="critical", title="cpu 99", dedup_key="web-1/cpu")
    )
    assert third.created
    assert third.alert.alert_id == "d3"


async def test_list_active_filters_and_pages(make_replica, stub_for) -> None:
    """ListActive filters by severity, state and target, and pages oldest first."""
    replica = await make_replica()
    stub = stub_for(replica.port)
    for i in range(5):
        await stub.Trigger(
            pb.TriggerRequest(
                alert_id=f"l{i}",
                severity="critical" if i % 2 == 0 else "high",
                title="t",
                actions=[action(3600, "team-1" if i < 3 else "team-2")],
            )
        )
    await stub.Acknowledge(pb.AcknowledgeRequest(alert_id="l0", by="1"))

    async def ids(**kw) -> list[str]:
        return [a.alert_id for a in (await stub.ListActive(pb.ListActiveRequest(**kw))).alerts]

    assert await ids() == ["l0", "l1", "l2", "l3", "l4"]
    assert await ids(severities=["critical"]) == ["l0", "l2", "l4"]
    assert await ids(states=[pb.ALERT_STATE_ACKNOWLEDGED]) == ["l0"]
    assert await ids(target="team-2") == ["l3", "l4"]
    assert await ids(severities=["critical"], states=[pb.ALERT_STATE_TRIGGERED]) == ["l2", "l4"]
    seen, token = [], ""
    while True:
        page = await stub.ListActive(pb.ListActiveRequest(limit=2, page_token=token))
        seen += [a.alert_id for a in page.alerts]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["l0", "l1", "l2", "l3", "l4"]


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (pb.TriggerRequest(severity="critical", title="t", alert_id="bad id"), "invalid_alert_id"),
        (pb.TriggerRequest(severity="urgent", title="t"), "invalid_severity"),
        (pb.TriggerRequest(severity="critical"), "invalid_title"),
        (
            pb.TriggerRequest(severity="critical", title="t", actions=[action(-1, "team-1")]),
            "invalid_delay",
        ),
        (
            pb.TriggerRequest(severity="critical", title="t", actions=[action(1e9, "team-1")]),
            "invalid_delay",
        ),
        (
            pb.TriggerRequest(
                severity="critical", title="t", actions=[action(float("inf"), "team-1")]
            ),
            "invalid_delay",
        ),
        (
            pb.TriggerRequest(severity="critical", title="t", actions=[action(1, "group-3")]),
            "invalid_target",
        ),
        (
            pb.TriggerRequest(severity="critical", title="t", actions=[action(1, "nobody")]),
            "invalid_target",
        ),
        (pb.TriggerRequest(severity="critical", title="t", policy="nope"), "unknown_policy"),
        (pb.TriggerRequest(severity="critical", title="t", description="x" * 20_000), "too_large"),
        (pb.TriggerRequest(severity="critical", title="t", metric_json="{"), "invalid_metric"),
        (pb.TriggerRequest(severity="critical", title="t", metric_json="[1]"), "invalid_metric"),
        (pb.TriggerRequest(severity="critical", title="t", dedup_key="a b"), "invalid_dedup_key"),
    ],
)
async def test_bad_triggers_are_invalid_argument(
    make_replica, stub_for, redis, request_, reason
) -> None:
    """Every bad trigger is INVALID_ARGUMENT with its reason, and nothing is written."""
    replica = await make_replica()
    stub = stub_for(replica.port)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Trigger(request_)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.details().startswith(reason + ":")
    assert await redis.keys("rg:esc:*") == []
    assert await room_events(redis, "alerts") == []


async def test_bad_lifecycle_calls(make_replica, stub_for, redis) -> None:
    """Unknown alerts are NOT_FOUND; bad ids, principals and filters INVALID_ARGUMENT."""
    replica = await make_replica()
    stub = stub_for(replica.port)
    calls = [
        (stub.Acknowledge(pb.AcknowledgeRequest(alert_id="nope", by="1")), "NOT_FOUND"),
        (stub.Resolve(pb.ResolveRequest(alert_id="nope", by="1")), "NOT_FOUND"),
        (stub.Get(pb.GetRequest(alert_id="nope")), "NOT_FOUND"),
        (stub.Get(pb.GetRequest(alert_id="")), "INVALID_ARGUMENT"),
        (stub.Acknowledge(pb.AcknowledgeRequest(alert_id="x", by="")), "INVALID_ARGUMENT"),
        (stub.Resolve(pb.ResolveRequest(alert_id="x y", by="1")), "INVALID_ARGUMENT"),
        (stub.ListActive(pb.ListActiveRequest(severities=["urgent"])), "INVALID_ARGUMENT"),
        (
            stub.ListActive(pb.ListActiveRequest(states=[pb.ALERT_STATE_RESOLVED])),
            "INVALID_ARGUMENT",
        ),
        (stub.ListActive(pb.ListActiveRequest(limit=5000)), "INVALID_ARGUMENT"),
        (stub.ListActive(pb.ListActiveRequest(page_token="zz")), "INVALID_ARGUMENT"),
        (stub.ListActive(pb.ListActiveRequest(target="group-1")), "INVALID_ARGUMENT"),
    ]
    for call, code in calls:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await call
        assert exc.value.code().name == code
    assert await redis.keys("rg:esc:*") == []


async def test_active_alert_cap(make_replica, stub_for) -> None:
    """Beyond the active alert cap a trigger is RESOURCE_EXHAUSTED."""
    replica = await make_replica(escalation_max_active_alerts=2)
    stub = stub_for(replica.port)
    for i in range(2):
        await stub.Trigger(pb.TriggerRequest(alert_id=f"c{i}", severity="info", title="t"))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Trigger(pb.TriggerRequest(alert_id="c2", severity="info", title="t"))
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # An update of an existing alert is still fine.
    await stub.Trigger(pb.TriggerRequest(alert_id="c1", severity="info", title="t2"))


async def test_three_replicas_fire_each_level_exactly_once(make_replica, stub_for, redis) -> None:
    """Three replicas sharing the due set publish every level of every alert exactly once."""
    replicas = [await make_replica() for _ in range(3)]
    stubs = [stub_for(r.port) for r in replicas]
    n = 40
    await asyncio.gather(
        *(
            stubs[i % 3].Trigger(
                pb.TriggerRequest(
                    alert_id=f"m{i}",
                    severity="critical",
                    title="t",
                    actions=[action(0.05 + (i % 5) * 0.02, "team-1"), action(0.2, "team-2")],
                )
            )
            for i in range(n)
        )
    )

    async def all_fired() -> list:
        events = await room_events(redis, "alerts", "alert_escalated")
        return events if len(events) >= 2 * n else []

    await wait_for(all_fired, timeout=30)
    await asyncio.sleep(0.5)

    async def all_recorded() -> bool:
        fired = sum(
            r.registry.get_sample_value(
                "roomgate_escalation_escalations_fired_total", {"severity": "critical"}
            )
            or 0
            for r in replicas
        )
        return fired == 2 * n and await redis.hlen(keys.ESC_CLAIMS) == 0

    await wait_for(all_recorded)
    assert await redis.zcard(keys.ESC_DUE) == 0
    counts = escalation_counts(await room_events(redis, "alerts", "alert_escalated"))
    assert counts == {(f"m{i}", level): 1 for i in range(n) for level in (1, 2)}
    team1 = escalation_counts(await room_events(redis, "team-1", "alert_escalated"))
    assert team1 == {(f"m{i}", 1): 1 for i in range(n)}
    team2 = escalation_counts(await room_events(redis, "team-2", "alert_escalated"))
    assert team2 == {(f"m{i}", 2): 1 for i in range(n)}


async def test_shutdown_hands_claimed_timers_back(make_replica, stub_for, redis) -> None:
    """A replica stopping while it holds a claim releases it: another fires at once, not after
    the lease."""
    slow = await make_replica(
        escalation_chaos_phase="before_publish",
        escalation_chaos_pause=30.0,
        escalation_lease_ms=60_000,
        shutdown_grace=0.4,
    )
    stub = stub_for(slow.port)
    await stub.Trigger(
        pb.TriggerRequest(
            alert_id="h1", severity="critical", title="t", actions=[action(0.05, "team-1")]
        )
    )
    await wait_for(lambda: redis.hget(keys.ESC_CLAIMS, "h1"))
    await slow.stop()
    slow.port = 0
    assert await redis.hget(keys.ESC_CLAIMS, "h1") is None
    other = await make_replica(escalation_lease_ms=60_000)
    events = await wait_for(lambda: room_events(redis, "alerts", "alert_escalated"), timeout=10)
    assert [e["id"] for e in events] == ["h1:esc:1"]

    async def recorded() -> bool:
        return (
            other.registry.get_sample_value(
                "roomgate_escalation_escalations_fired_total", {"severity": "critical"}
            )
            == 1
        )

    await wait_for(recorded)


async def test_metrics_are_exported(make_replica, stub_for, redis) -> None:
    """Alerts by state, escalations fired and the timer lag histogram are in the registry."""
    replica = await make_replica()
    stub = stub_for(replica.port)
    await stub.Trigger(
        pb.TriggerRequest(
            alert_id="x1", severity="high", title="t", actions=[action(0.02, "team-1")]
        )
    )
    await stub.Trigger(pb.TriggerRequest(alert_id="x2", severity="high", title="t"))
    await wait_for(lambda: room_events(redis, "alerts", "alert_escalated"))

    def sample(name: str, **labels: str) -> float | None:
        return replica.registry.get_sample_value(name, labels)

    async def fired() -> bool:
        return sample("roomgate_escalation_escalations_fired_total", severity="high") == 1

    await wait_for(fired)
    assert sample("roomgate_escalation_timer_lag_seconds_count") == 1

    async def gauge() -> bool:
        return sample("roomgate_escalation_alerts", state="escalated") == 1

    await wait_for(gauge, timeout=10)
    assert sample("roomgate_escalation_alerts", state="triggered") == 1
    assert sample("roomgate_escalation_grpc_requests_total", method="Trigger", code="OK") == 2


async def test_health_and_reflection(make_replica) -> None:
    """The stock health service says SERVING for the escalation service; reflection lists it."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    replica = await make_replica()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{replica.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        res = await health.Check(
            health_pb2.HealthCheckRequest(service="roomgate.escalation.v1.EscalationService")
        )
        assert res.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo()
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        await call.done_writing()
        names = set()
        async for answer in call:
            names |= {s.name for s in answer.list_services_response.service}
        assert "roomgate.escalation.v1.EscalationService" in names


async def test_redis_down_is_unavailable(own_redis, stub_for, escalation_auth) -> None:
    """With Redis gone every call is UNAVAILABLE (and the replica keeps running)."""
    from roomgate_escalation.policy import PolicyConfig
    from roomgate_escalation.server import EscalationReplica
    from roomgate_escalation.settings import EscalationSettings

    settings = EscalationSettings.from_env(
        redis_url=own_redis.url,
        auth_addr=f"127.0.0.1:{escalation_auth.port}",
        escalation_listen="127.0.0.1:0",
        escalation_poll_interval=0.05,
        shutdown_grace=1.0,
    )
    replica = EscalationReplica(settings, config=PolicyConfig())
    await replica.start()
    try:
        stub = stub_for(replica.port)
        await stub.Trigger(pb.TriggerRequest(alert_id="u1", severity="info", title="t"))
        await asyncio.to_thread(own_redis.stop)
        for call in (
            stub.Trigger(pb.TriggerRequest(alert_id="u2", severity="info", title="t")),
            stub.Get(pb.GetRequest(alert_id="u1")),
            stub.Acknowledge(pb.AcknowledgeRequest(alert_id="u1", by="1")),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await call
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
        await asyncio.to_thread(own_redis.start)
        got = await wait_for(lambda: _get_or_none(stub, "u1"), timeout=20, interval=0.2)
        assert got.alert.alert_id == "u1"
    finally:
        await replica.stop()


async def _get_or_none(stub, alert_id: str):
    try:
        return await stub.Get(pb.GetRequest(alert_id=alert_id))
    except grpc.aio.AioRpcError:
        return None
