"""Replicas as real processes (the ``roomgate-escalation`` console script) killed with
SIGKILL while they hold a due timer: the escalation still happens exactly once, within the
documented bound (lease + poll interval + the time a fire takes)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

import pytest
from roomgate.escalation.v1 import escalation_pb2 as pb
from roomgate.escalation.v1 import escalation_pb2_grpc as pb_grpc
from roomgate_auth.server import AuthServer
from roomgate_common import keys
from roomgate_tools.procs import ManagedProcess, free_port, wait_for_port

from tests.escalation.conftest import caller_channel, escalation_counts, room_events, wait_for

SCRIPT = str(Path(sys.executable).parent / "roomgate-escalation")
LEASE_MS = 2000


class Replica:
    def __init__(self, proc: ManagedProcess, port: int, name: str, auth: AuthServer) -> None:
        self.proc, self.port, self.name = proc, port, name
        self.channel = caller_channel(auth, port)
        self.stub = pb_grpc.EscalationServiceStub(self.channel)


StartReplicas = Callable[..., "asyncio.Future[list[Replica]]"]


@pytest.fixture
async def start_replicas(
    redis_url: str, tmp_path: Path, escalation_auth: AuthServer
) -> AsyncIterator[StartReplicas]:
    started: list[Replica] = []

    async def start(n: int, **env: str) -> list[Replica]:
        batch = []
        for i in range(n):
            port, name = free_port(), f"r{len(started) + i}"
            proc = ManagedProcess(
                [SCRIPT],
                log_path=tmp_path / f"{name}.log",
                env={
                    "ROOMGATE_REDIS_URL": redis_url,
                    "ROOMGATE_AUTH_ADDR": f"127.0.0.1:{escalation_auth.port}",
                    "ROOMGATE_ESCALATION_LISTEN": f"127.0.0.1:{port}",
                    "ROOMGATE_ESCALATION_CONSUMER_NAME": name,
                    "ROOMGATE_ESCALATION_POLL_INTERVAL": "0.02",
                    "ROOMGATE_ESCALATION_LEASE_MS": str(LEASE_MS),
                    "ROOMGATE_METRICS_LISTEN": "127.0.0.1:0",
                    "ROOMGATE_SHUTDOWN_GRACE": "2",
                    **env,
                },
            )
            proc.start()
            batch.append(Replica(proc, port, name, escalation_auth))
        started.extend(batch)
        for replica in batch:
            await asyncio.to_thread(wait_for_port, replica.port, 30.0)
        return batch

    yield start  # type: ignore[misc]
    for replica in started:
        await replica.channel.close()
        await asyncio.to_thread(replica.proc.stop, 5.0)


def _ms(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


async def _kill_claim_holder(redis, replicas: list[Replica], alert_id: str) -> Replica:
    token = (await wait_for(lambda: redis.hget(keys.ESC_CLAIMS, alert_id), interval=0.005)).decode()
    holder = next(r for r in replicas if r.name == token.split(":")[0])
    holder.proc.signal(signal.SIGKILL)
    await asyncio.to_thread(holder.proc.proc.wait, 5)  # type: ignore[union-attr]
    return holder


async def test_sigkill_before_publish_escalates_once_after_lease(start_replicas, redis) -> None:
    """The replica holding a due timer dies before publishing: another replica fires it once
    after the lease runs out."""
    pause = 0.5
    replicas = await start_replicas(
        3,
        ROOMGATE_ESCALATION_CHAOS_PHASE="before_publish",
        ROOMGATE_ESCALATION_CHAOS_PAUSE=str(pause),
    )
    await replicas[0].stub.Trigger(
        pb.TriggerRequest(
            alert_id="k1",
            severity="critical",
            title="t",
            actions=[pb.EscalateAction(delay_seconds=0.2, target="team-1")],
        )
    )
    dead = await _kill_claim_holder(redis, replicas, "k1")
    events = await wait_for(lambda: room_events(redis, "alerts", "alert_escalated"), timeout=30)
    lag = _ms(events[0]["data"]["escalated_at"]) - _ms(events[0]["data"]["due_at"])
    # Re-delivered after the lease, within lease + poll + slack for a loaded machine.
    assert LEASE_MS * 0.9 <= lag <= LEASE_MS + 10_000
    survivor = next(r for r in replicas if r is not dead)

    async def recorded() -> bool:
        got = await survivor.stub.Get(pb.GetRequest(alert_id="k1"))
        return got.alert.levels_fired == 1

    await wait_for(recorded, timeout=30)
    await asyncio.sleep(0.5)
    assert escalation_counts(await room_events(redis, "alerts", "alert_escalated")) == {
        ("k1", 1): 1
    }
    assert escalation_counts(await room_events(redis, "team-1", "alert_escalated")) == {
        ("k1", 1): 1
    }


async def test_sigkill_after_publish_does_not_publish_twice(start_replicas, redis) -> None:
    """The replica dies after publishing but before recording the level: the replica taking
    over finds the envelope in the rooms' history, does not publish again, records the level
    and schedules the next one."""
    replicas = await start_replicas(
        3, ROOMGATE_ESCALATION_CHAOS_PHASE="after_publish", ROOMGATE_ESCALATION_CHAOS_PAUSE="1.2"
    )
    await replicas[0].stub.Trigger(
        pb.TriggerRequest(
            alert_id="k2",
            severity="critical",
            title="t",
            actions=[
                pb.EscalateAction(delay_seconds=0.2, target="team-1"),
                pb.EscalateAction(delay_seconds=0.4, target="team-2"),
            ],
        )
    )
    await wait_for(lambda: room_events(redis, "team-1", "alert_escalated"), interval=0.005)
    dead = await _kill_claim_holder(redis, replicas, "k2")
    survivor = next(r for r in replicas if r is not dead)

    async def both_levels() -> bool:
        got = await survivor.stub.Get(pb.GetRequest(alert_id="k2"))
        return got.alert.levels_fired == 2

    await wait_for(both_levels, timeout=40)
    await asyncio.sleep(0.5)
    assert escalation_counts(await room_events(redis, "alerts", "alert_escalated")) == {
        ("k2", 1): 1,
        ("k2", 2): 1,
    }
    assert escalation_counts(await room_events(redis, "team-1", "alert_escalated")) == {
        ("k2", 1): 1
    }
    assert escalation_counts(await room_events(redis, "team-2", "alert_escalated")) == {
        ("k2", 2): 1
    }
    got = await survivor.stub.Get(pb.GetRequest(alert_id="k2"))
    assert [t.event for t in got.alert.timeline] == ["triggered", "escalated", "escalated"]


async def test_sigterm_hands_timers_back(start_replicas, redis) -> None:
    """SIGTERM while holding a claim releases it: another process fires well before the lease
    (60 s here) would have run out."""
    slow = (
        await start_replicas(
            1,
            ROOMGATE_ESCALATION_CHAOS_PHASE="before_publish",
            ROOMGATE_ESCALATION_CHAOS_PAUSE="60",
            ROOMGATE_ESCALATION_LEASE_MS="60000",
            ROOMGATE_SHUTDOWN_GRACE="1",
        )
    )[0]
    await slow.stub.Trigger(
        pb.TriggerRequest(
            alert_id="k3",
            severity="critical",
            title="t",
            actions=[pb.EscalateAction(delay_seconds=0.1, target="team-1")],
        )
    )
    await wait_for(lambda: redis.hget(keys.ESC_CLAIMS, "k3"))
    assert await asyncio.to_thread(slow.proc.stop, 10.0) == 0
    assert await redis.hget(keys.ESC_CLAIMS, "k3") is None
    await start_replicas(1, ROOMGATE_ESCALATION_LEASE_MS="60000")
    events = await wait_for(lambda: room_events(redis, "alerts", "alert_escalated"), timeout=20)
    assert [e["id"] for e in events] == ["k3:esc:1"]
