"""Shutdown: cleanup waits for the handlers in flight before it closes the clients, and
handlers that start after it do nothing.

kopf gives each policy's handlers a shallow copy of the operator memo, taken when it first
sees the policy (kopf's own ResourceMemories, used here as kopf uses it): what cleanup
must see or wait for has to be one object startup put on the operator memo. The handlers
are build_registry's, run with the real Kubernetes client (the session's API server) and
Redis; only the Reconciler's entry points are wrapped, to hold a reconcile in flight or to
count calls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
import pytest
from kopf._core.reactor.inventory import ResourceMemories
from roomgate_operator import handlers
from roomgate_operator.handlers import build_registry
from roomgate_operator.lifecycle import Lifecycle
from roomgate_operator.settings import OperatorSettings
from roomgate_tools.procs import free_port

from tests.operator.conftest import POLICIES, Cluster, gateway_policy

pytestmark = pytest.mark.timeout(60, func_only=True)

log = logging.getLogger(__name__)
Handler = Callable[..., Coroutine[Any, Any, Any]]


async def recall_memo(
    memories: ResourceMemories, raw: Mapping[str, Any], operator_memo: kopf.Memo
) -> kopf.Memo:
    """What kopf does when it sees an object: its memo from the inventory (remembered per
    object; the first time, a copy of the operator memo)."""
    memo = await memories.recall_memo(cast(kopf.RawBody, raw), memobase=cast(Any, operator_memo))
    return cast(kopf.Memo, memo)


@dataclass
class Started:
    """The operator after its startup handler: the operator memo and every handler by name."""

    memo: kopf.Memo
    fns: dict[str, Handler]
    memories: ResourceMemories = field(default_factory=ResourceMemories)
    cleaned: bool = False

    async def object_memo(self, raw: Mapping[str, Any]) -> kopf.Memo:
        """The memo kopf gives this object's handlers (a copy of the operator memo)."""
        return await recall_memo(self.memories, raw, self.memo)

    async def cleanup(self) -> None:
        self.cleaned = True
        await self.fns["cleanup"](memo=self.memo, logger=log)


@pytest.fixture
async def started(cluster: Cluster, redis_url: str) -> AsyncIterator[Started]:
    settings = OperatorSettings.from_env(
        redis_url=redis_url,
        metrics_listen=f"127.0.0.1:{free_port()}",
        watch_namespace=cluster.ns,
        kubeconfig=str(cluster.api.kubeconfig),
        reconcile_interval=0.3,
    )
    registry = build_registry(settings)
    fns: dict[str, Handler] = {}
    for reg in (registry._activities, registry._spawning, registry._changing):
        for handler in reg.get_all_handlers():
            fns[getattr(handler.fn, "__name__", "")] = cast(Handler, handler.fn)
    memo = kopf.Memo()
    await fns["startup"](settings=kopf.OperatorSettings(), memo=memo, logger=log)
    op = Started(memo, fns)
    yield op
    if not op.cleaned:
        await op.cleanup()


async def a_policy(cluster: Cluster) -> kopf.Body:
    raw = await cluster.ok(
        "POST", POLICIES, gateway_policy("gateway", limits={"maxConnectionsPerIp": 10})
    )
    return kopf.Body(raw)


async def test_cleanup_waits_for_the_reconcile_in_flight(
    cluster: Cluster, started: Started, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A timer tick in flight when cleanup starts (its memo copy taken before): cleanup
    returns only after it, and the tick's real reconcile (API server, Redis) completes on
    open clients. A change handler queued behind the tick's lock does nothing."""
    body = await a_policy(cluster)
    memo = await started.object_memo(body)
    reconciler = memo["reconciler"]
    real_reconcile, real_apply_limits = reconciler.reconcile, reconciler.apply_limits
    in_flight, release = asyncio.Event(), asyncio.Event()
    applied: list[asyncio.Task[Any] | None] = []  # by task: the tick's reconcile calls it too

    async def held_reconcile(body: kopf.Body, state: Any) -> Any:
        in_flight.set()
        await release.wait()
        return await real_reconcile(body, state)  # the Kubernetes client and Redis

    async def counted_apply_limits(body: kopf.Body, state: Any) -> Any:
        applied.append(asyncio.current_task())
        return await real_apply_limits(body, state)

    monkeypatch.setattr(reconciler, "reconcile", held_reconcile)
    monkeypatch.setattr(reconciler, "apply_limits", counted_apply_limits)

    tick = asyncio.create_task(started.fns["reconcile"](body=body, memo=memo, logger=log))
    await asyncio.wait_for(in_flight.wait(), 5)
    change = asyncio.create_task(started.fns["limits_changed"](body=body, memo=memo, logger=log))
    stopping = asyncio.create_task(started.cleanup())
    try:
        await asyncio.sleep(0.3)
        assert not stopping.done(), "cleanup closed the clients under a reconcile in flight"
        release.set()
        await asyncio.wait_for(tick, 10)
        await asyncio.wait_for(stopping, 10)
        await asyncio.wait_for(change, 5)
    finally:
        release.set()
        await asyncio.gather(tick, change, stopping, return_exceptions=True)
    assert applied == [tick], "a change handler queued behind the tick ran after cleanup"
    status = (await cluster.policy("gateway")).get("status", {})
    assert status.get("observedGeneration") == 1, status  # the held reconcile's status write


async def test_handlers_started_after_cleanup_do_nothing(
    cluster: Cluster, started: Started, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A policy kopf already knows (its memo copy predates cleanup): after cleanup its
    timer, change and delete handlers return without touching the Reconciler (whose
    clients are closed)."""
    body = await a_policy(cluster)
    memo = await started.object_memo(body)
    await started.cleanup()
    calls: list[str] = []
    reconciler = memo["reconciler"]
    for name in ("reconcile", "apply_limits", "forget"):

        async def record(*_: Any, name: str = name) -> None:
            calls.append(name)

        monkeypatch.setattr(reconciler, name, record)
    for handler in ("reconcile", "limits_changed", "deleted"):
        await started.fns[handler](body=body, memo=memo, logger=log)
    assert calls == []


async def test_one_policys_handlers_share_its_state_and_policies_do_not() -> None:
    """kopf's memo copies: one per object (all its handlers), each referring to the
    operator's one Lifecycle; the PolicyState (and its lock) is per policy."""
    operator_memo = kopf.Memo(lifecycle=Lifecycle())
    memories = ResourceMemories()

    def raw(name: str) -> dict[str, Any]:
        return {
            "apiVersion": "roomgate.io/v1alpha1",
            "kind": "GatewayPolicy",
            "metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}"},
        }

    a_change = await recall_memo(memories, raw("a"), operator_memo)
    a_timer = await recall_memo(memories, raw("a"), operator_memo)
    b = await recall_memo(memories, raw("b"), operator_memo)
    assert a_change is not operator_memo
    assert handlers._state(a_change) is handlers._state(a_timer)
    assert handlers._state(a_change) is not handlers._state(b)
    assert a_change["lifecycle"] is b["lifecycle"] is operator_memo["lifecycle"]
    assert "policy_state" not in operator_memo


# -- Lifecycle alone ------------------------------------------------------------------


async def test_stop_waits_for_work_in_flight() -> None:
    lifecycle = Lifecycle()
    release = asyncio.Event()

    async def handler() -> bool:
        async with lifecycle.work() as running:
            await release.wait()
            return running

    first, second = asyncio.create_task(handler()), asyncio.create_task(handler())
    await asyncio.sleep(0)
    assert lifecycle.in_flight == 2
    stop = asyncio.create_task(lifecycle.stop(grace=5))
    await asyncio.sleep(0.05)
    assert not stop.done() and lifecycle.stopping
    release.set()
    assert await first and await second
    assert await stop is True
    assert lifecycle.in_flight == 0


async def test_work_after_stop_is_refused_and_not_counted() -> None:
    lifecycle = Lifecycle()
    assert await lifecycle.stop(grace=1) is True  # nothing in flight: at once
    async with lifecycle.work() as running:
        assert running is False
        assert lifecycle.in_flight == 0


async def test_stop_gives_up_after_the_grace(caplog: pytest.LogCaptureFixture) -> None:
    lifecycle = Lifecycle()
    release = asyncio.Event()

    async def stuck() -> None:
        async with lifecycle.work():
            await release.wait()

    task = asyncio.create_task(stuck())
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="roomgate_operator.lifecycle"):
        assert await lifecycle.stop(grace=0.1) is False
    assert "1 handler(s) still running" in caplog.text
    release.set()
    await task
    assert lifecycle.in_flight == 0
