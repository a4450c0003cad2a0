"""The operator end to end: kopf (KopfRunner) against a real kube-apiserver, real Redis and
a real `roomgate-gateway` process whose gateway id is a pod of the target Deployment.

A policy's limits reach the live gateway (a new connection past the new per-IP limit is
refused, existing ones stay), the status shows the applied generation, connection counts
scale the Deployment through its scale subresource (deletion costs and drains before a
step down), and invalid policies are refused by the API server or reported Degraded while
the operator keeps running."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import websockets
from roomgate_auth.server import AuthServer
from roomgate_common import keys
from roomgate_common.identity import Principal, PrincipalKind
from roomgate_common.redis_adapter import connect
from roomgate_tools.procs import ManagedProcess, RedisProcess, free_port, wait_for_port

from tests.gateway.conftest import recv, recv_until, send, services
from tests.operator.conftest import (
    CONFIGMAPS,
    DEPLOYMENTS,
    MERGE,
    PODS,
    POLICIES,
    Cluster,
    condition,
    dump,
    eventually,
    gateway_policy,
    run_operator,
)

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"

# Bound the tests themselves: starting the session's API server (first test's setup) has
# its own bound, and on a loaded machine it alone can take most of a minute.
pytestmark = pytest.mark.timeout(90, func_only=True)


@asynccontextmanager
async def real_gateway(
    redis_url: str, gateway_id: str, tmp_path: Path
) -> AsyncIterator[tuple[str, AuthServer]]:
    """`roomgate-gateway` as a process with auth and roomauthz in this test; yields its URL
    and the auth server (to mint tokens)."""
    async with services(redis_url) as (auth, authz):
        port = free_port()
        proc = ManagedProcess(
            [str(Path(sys.executable).parent / "roomgate-gateway")],
            log_path=tmp_path / f"{gateway_id}.log",
            env={
                "ROOMGATE_GATEWAY_ID": gateway_id,
                "ROOMGATE_LISTEN": f"127.0.0.1:{port}",
                "ROOMGATE_REDIS_URL": redis_url,
                "ROOMGATE_AUTH_ADDR": f"127.0.0.1:{auth.port}",
                "ROOMGATE_ROOMAUTHZ_ADDR": f"127.0.0.1:{authz.port}",
                "ROOMGATE_PRESENCE_INTERVAL": "0.5",
                "ROOMGATE_MAX_CONNECTIONS_PER_IP": "10",
                "ROOMGATE_MAX_CONNECTIONS_PER_USER": "100",
                "ROOMGATE_DRAIN_SECONDS": "0.5",
                "ROOMGATE_SHUTDOWN_GRACE": "2",
            },
        )
        proc.start()
        try:
            await asyncio.to_thread(wait_for_port, port, 20)
            yield f"ws://127.0.0.1:{port}/ws", auth
        finally:
            proc.stop(timeout=5)
            assert "Traceback" not in proc.output(), proc.output()[-3000:]


def token(auth: AuthServer, uid: str) -> str:
    principal = Principal(kind=PrincipalKind.USER, id=uid, permissions=("view_system",))
    return auth.policy.mint(principal)[0]


async def try_connect(url: str) -> tuple[str, int | None, Any]:
    """("welcome", None, ws) or (error code, close code, None)."""
    ws = await websockets.connect(url)
    first = await recv(ws)
    if first["type"] == "welcome":
        return "welcome", None, ws
    try:
        await asyncio.wait_for(ws.wait_closed(), 5)
    finally:
        code = ws.close_code
    return first["data"]["code"], code, None


async def write_presence(redis: Any, pod: str, connections: int, generation: int = 0) -> None:
    """The presence a gateway of this pod would report (a fake pod's)."""
    await redis.hset(
        keys.gateway_presence(pod),
        mapping={
            "connections": connections,
            "rooms": 0,
            "applied_generation": generation,
            "draining": 0,
            "ts": time.time(),
        },
    )
    await redis.expire(keys.gateway_presence(pod), 120)


async def test_policy_reaches_live_gateway_and_connections_scale_the_deployment(
    cluster: Cluster, redis: Any, redis_url: str, tmp_path: Path
) -> None:
    """kubectl apply of a lower per-IP limit -> the live gateway refuses the next connection
    past it within 5 s (existing ones stay), status shows the applied generation; connection counts scale
    the Deployment up at once and down one drained pod per step, emptiest first."""
    enforced, attempts, scaled_up = await scale_scenario(cluster, redis, redis_url, tmp_path)
    # (KopfRunner's click runner captures stdout while the operator runs: print after.)
    print(f"\napply (limits change) -> per-IP limit enforced on the live gateway: {enforced:.2f} s")
    print(f"({attempts} connection attempts); status after the scale-up:\n{dump(scaled_up)}")


async def scale_scenario(
    cluster: Cluster, redis: Any, redis_url: str, tmp_path: Path
) -> tuple[float, int, dict[str, Any]]:
    await cluster.create_pod("gateway-a")
    async with real_gateway(redis_url, "gateway-a", tmp_path) as (url, auth):
        with run_operator(cluster, redis_url) as operator:
            existing = []
            for uid in ("1", "2"):
                kind, _, ws = await try_connect(f"{url}?token={token(auth, uid)}")
                assert kind == "welcome"
                existing.append(ws)

            # --- limits: kubectl apply -> enforced on the live gateway -----------------
            # First the policy as created (the operator starting up meanwhile), then the
            # measured change: maxConnectionsPerIp 10 -> 2 on the running system.
            spec: dict[str, Any] = {
                "limits": {"maxConnectionsPerIp": 10, "maxMessageBytes": 4096},
                "scaling": {
                    "minReplicas": 1,
                    "maxReplicas": 4,
                    "targetConnectionsPerPod": 10,
                    "scaleUpStabilizationSeconds": 0,
                    "scaleDownStabilizationSeconds": 0,
                    "maxPodsRemovedPerStep": 1,
                    "drainTimeoutSeconds": 5,
                },
            }
            await cluster.ok("POST", POLICIES, gateway_policy("gateway", **spec))
            await eventually(
                lambda: cluster.policy("gateway"),
                lambda p: p.get("status", {}).get("appliedGeneration") == 1,
                what="generation 1 applied",
            )
            spec["limits"]["maxConnectionsPerIp"] = 2
            started = time.monotonic()
            await cluster.ok(
                "PATCH", POLICIES + "/gateway", {"spec": {"limits": spec["limits"]}},
                content_type=MERGE,
            )  # fmt: skip
            attempts = 0
            while True:
                attempts += 1
                kind, close, ws = await try_connect(f"{url}?token={token(auth, '3')}")
                if ws is None:
                    break
                await ws.close()
                assert time.monotonic() - started < 5, "limit not enforced within 5 s"
                await asyncio.sleep(0.05)
            enforced = time.monotonic() - started
            assert (kind, close) == ("connection_limit", 4029)
            assert enforced < 5
            for ws in existing:  # lowered limits do not drop live connections
                await send(ws, {"type": "ping"})
                assert (await recv_until(ws, lambda m: m["type"] == "pong"))["type"] == "pong"

            live = await redis.hgetall(keys.LIVE_POLICY)
            assert int(live[b"generation"]) == 2
            assert json.loads(live[b"limits"]) == spec["limits"]
            cm = await cluster.ok("GET", CONFIGMAPS + "/gateway-limits")
            assert json.loads(cm["data"]["limits.json"]) == spec["limits"]
            assert cm["metadata"]["ownerReferences"][0]["kind"] == "GatewayPolicy"

            policy = await eventually(
                lambda: cluster.policy("gateway"),
                lambda p: (
                    p["status"].get("appliedGeneration") == 2
                    and p["status"]["podConnections"] == {"gateway-a": 2}  # the probe has gone
                ),
                what="Applied",
            )
            status = policy["status"]
            assert status["appliedGeneration"] == policy["metadata"]["generation"] == 2
            assert condition(policy, "Applied")["status"] == "True"
            assert status["podConnections"] == {"gateway-a": 2}
            assert condition(policy, "Ready")["status"] == "True"
            assert condition(policy, "Degraded")["status"] == "False"

            # --- scale up: 2 real + 25 reported by a fake pod = 27 -> ceil(27/10) = 3 -----
            await cluster.create_pod("gateway-b")
            await cluster.create_pod("gateway-c")
            await write_presence(redis, "gateway-b", 25, generation=2)
            await write_presence(redis, "gateway-c", 0, generation=2)
            await eventually(cluster.replicas, lambda r: r == 3, what="3 replicas")
            policy = await eventually(
                lambda: cluster.policy("gateway"),
                lambda p: p["status"].get("currentReplicas") == 3,
                what="status at 3 replicas",
            )
            assert policy["status"]["observedConnections"] == 27
            assert policy["status"]["desiredReplicas"] == 3
            assert policy["status"]["lastScaleTime"]
            scaled_up = policy["status"]

            # --- scale down: gateway-b empties -> 2 connections -> 1 replica, one step at a
            # time, each step drains the emptiest pod first and marks it cheapest to delete.
            pubsub = redis.pubsub()
            channels = {keys.gateway_control_channel(p): p for p in ("gateway-b", "gateway-c")}
            await pubsub.subscribe(*channels, keys.gateway_control_channel("gateway-a"))
            await write_presence(redis, "gateway-b", 0, generation=2)
            await eventually(cluster.replicas, lambda r: r == 2, what="2 replicas")
            pods = await cluster.ok("GET", PODS)
            costs = {
                p["metadata"]["name"]: p["metadata"].get("annotations", {}).get(DELETION_COST)
                for p in pods["items"]
            }
            assert costs == {"gateway-a": "2", "gateway-b": "-1", "gateway-c": "0"}
            drained = await next_drain(pubsub)
            assert drained == (keys.gateway_control_channel("gateway-b"), 1.0)

            # The ReplicaSet controller would now delete gateway-b (cheapest): do its job.
            await cluster.ok("DELETE", PODS + "/gateway-b")
            await redis.delete(keys.gateway_presence("gateway-b"))
            await eventually(cluster.replicas, lambda r: r == 1, what="1 replica")
            drained = await next_drain(pubsub)
            assert drained == (keys.gateway_control_channel("gateway-c"), 1.0)
            policy = await eventually(
                lambda: cluster.policy("gateway"),
                lambda p: (
                    p["status"].get("currentReplicas") == 1 and "scaleDown" not in p["status"]
                ),
                what="status at 1 replica",
            )
            assert condition(policy, "Ready")["status"] == "True"
            table = await cluster.table(POLICIES)  # kubectl get gatewaypolicies
            assert list(table) == [
                "Name", "Target", "Connections", "Desired", "Current", "Applied", "Ready", "Age"
            ]  # fmt: skip
            assert [v[0] for v in list(table.values())[:7]] == [
                "gateway", "gateway", 2, 1, 1, 2, "True"
            ]  # fmt: skip
            # The real gateway was never asked to drain: its clients are still here.
            for ws in existing:
                await send(ws, {"type": "ping"})
                assert (await recv_until(ws, lambda m: m["type"] == "pong"))["type"] == "pong"
            assert await asyncio.to_thread(operator.alive)
            metrics = await asyncio.to_thread(operator.scrape)
            policy_label = f'policy="{cluster.ns}/gateway"'
            for line in (
                f'roomgate_operator_scale_events_total{{direction="up",{policy_label}}} 1.0',
                f'roomgate_operator_scale_events_total{{direction="down",{policy_label}}} 2.0',
                f"roomgate_operator_drains_total{{{policy_label}}} 2.0",
                f"roomgate_operator_current_replicas{{{policy_label}}} 1.0",
            ):
                assert line in metrics, metrics
            await pubsub.aclose()
            for ws in existing:
                await ws.close()
    return enforced, attempts, scaled_up


async def next_drain(pubsub: Any, timeout: float = 10.0) -> tuple[str, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if msg is not None:
            command = json.loads(msg["data"])
            assert command["command"] == "drain"
            return msg["channel"].decode(), float(command["fraction"])
    raise AssertionError("no drain command")


async def test_invalid_policies_are_refused_or_degraded(
    cluster: Cluster, redis: Any, redis_url: str
) -> None:
    """Wrong types and ranges are refused by the API server (schema and CEL); a second policy
    for the same Deployment and a missing target are Degraded; the operator keeps running
    and the valid policy stays Ready."""
    bad = [
        {"limits": {"maxConnectionsPerIp": "ten"}},
        {"limits": {"maxConnectionsPerIp": 0}},
        {"limits": {"heartbeatIntervalSeconds": 30, "heartbeatTimeoutSeconds": 10}},
        {"scaling": {"minReplicas": 5, "maxReplicas": 2}},
        {"scaling": {"targetConnectionsPerPod": -1}},
    ]
    for spec in bad:
        status, body = await cluster.call("POST", POLICIES, gateway_policy("bad", **spec))
        assert status == 422, (spec, status, body.get("message"))
    status, body = await cluster.call(
        "POST", POLICIES, gateway_policy("bad", scaling={"minReplicas": 3, "maxReplicas": 1})
    )
    assert "minReplicas must not exceed maxReplicas" in str(body.get("message"))

    await cluster.ok("POST", POLICIES, gateway_policy("orphan", target="no-such-deployment"))
    with run_operator(cluster, redis_url) as operator:
        orphan = await eventually(
            lambda: cluster.policy("orphan"),
            lambda p: condition(p, "Degraded").get("status") == "True",
            what="orphan Degraded",
        )
        assert condition(orphan, "Degraded")["reason"] == "TargetNotFound"
        assert condition(orphan, "Ready")["status"] == "False"
        assert not await redis.exists(keys.LIVE_POLICY)  # nothing published for it
        await cluster.ok("DELETE", POLICIES + "/orphan")

        await cluster.ok(
            "POST", POLICIES, gateway_policy("first", limits={"maxConnectionsPerIp": 5})
        )
        await eventually(
            lambda: cluster.policy("first"),
            lambda p: condition(p, "Degraded").get("status") == "False",
            what="first reconciled",
        )
        await asyncio.sleep(1.1)  # creationTimestamp has a one-second resolution
        await cluster.ok(
            "POST", POLICIES, gateway_policy("second", limits={"maxConnectionsPerIp": 50})
        )
        second = await eventually(
            lambda: cluster.policy("second"),
            lambda p: condition(p, "Degraded").get("status") == "True",
            what="second Degraded",
        )
        assert condition(second, "Degraded")["reason"] == "Conflict"
        assert "first" in condition(second, "Degraded")["message"]
        assert condition(second, "Ready")["status"] == "False"

        # The live policy is still the first one's, and it keeps being reconciled.
        live = await redis.hgetall(keys.LIVE_POLICY)
        assert json.loads(live[b"limits"]) == {"maxConnectionsPerIp": 5}
        await cluster.ok(
            "PATCH",
            POLICIES + "/first",
            {"spec": {"limits": {"maxConnectionsPerIp": 7}}},
            content_type=MERGE,
        )
        await eventually(
            lambda: cluster.policy("first"),
            lambda p: p.get("status", {}).get("observedGeneration") == 2,
            what="first at generation 2",
        )
        assert await asyncio.to_thread(operator.alive)
        # The Deployment was never touched by a policy that does not govern it.
        assert (await cluster.ok("GET", DEPLOYMENTS + "/gateway"))["spec"]["replicas"] == 1


async def test_redis_outage_and_lost_policy_are_repaired(
    cluster: Cluster, own_redis: RedisProcess
) -> None:
    """Level-based: a live policy Redis lost is written again on the next tick; while Redis is
    down the operator retries (TemporaryError) and keeps running, and once it is back a spec
    change reaches Redis again."""
    spec = {"limits": {"maxConnectionsPerIp": 3}}
    await cluster.ok("POST", POLICIES, gateway_policy("gateway", **spec))
    with run_operator(cluster, own_redis.url) as operator:
        client = connect(own_redis.url)
        try:

            async def live() -> dict[bytes, bytes]:
                return await client.hgetall(keys.LIVE_POLICY)  # type: ignore[no-any-return]

            await eventually(live, lambda h: h.get(b"generation") == b"1", what="published")
            await client.delete(keys.LIVE_POLICY)  # e.g. Redis restarted without persistence
            await eventually(live, lambda h: h.get(b"generation") == b"1", what="re-published")

            await asyncio.to_thread(own_redis.stop)
            await cluster.ok(
                "PATCH",
                POLICIES + "/gateway",
                {"spec": {"limits": {"maxConnectionsPerIp": 4}}},
                content_type=MERGE,
            )
            await asyncio.sleep(1.5)  # a few ticks and handler retries against a dead Redis
            assert await asyncio.to_thread(operator.alive)
            await asyncio.to_thread(own_redis.start)
            latest = await eventually(
                live, lambda h: h.get(b"generation") == b"2", timeout=15, what="generation 2"
            )
            assert json.loads(latest[b"limits"]) == {"maxConnectionsPerIp": 4}
        finally:
            await client.aclose()
    assert "failed temporarily" in operator.runner.output  # retried, not crashed


async def test_the_roomgate_operator_process(
    cluster: Cluster, redis_url: str, tmp_path: Path
) -> None:
    """`roomgate-operator` as the chart runs it (kopf.run, standalone, one namespace): it
    reconciles a policy, answers its liveness probe and /metrics, logs JSON, and stops on
    SIGTERM."""
    health, metrics = free_port(), free_port()
    proc = ManagedProcess(
        [str(Path(sys.executable).parent / "roomgate-operator")],
        log_path=tmp_path / "operator.log",
        env={
            "ROOMGATE_WATCH_NAMESPACE": cluster.ns,
            "ROOMGATE_GATEWAY_DEPLOYMENT": "gateway",
            "ROOMGATE_KUBECONFIG": str(cluster.api.kubeconfig),
            "ROOMGATE_REDIS_URL": redis_url,
            "ROOMGATE_HEALTH_LISTEN": f"127.0.0.1:{health}",
            "ROOMGATE_METRICS_LISTEN": f"127.0.0.1:{metrics}",
            "ROOMGATE_RECONCILE_INTERVAL": "0.5",
        },
    )
    await cluster.ok("POST", POLICIES, gateway_policy("gateway", limits={"maxConnectionsPerIp": 9}))
    await asyncio.sleep(1.1)  # creationTimestamp has a one-second resolution
    await cluster.ok("POST", POLICIES, gateway_policy("elsewhere", target="other"))
    proc.start()
    try:
        await asyncio.to_thread(wait_for_port, health, 20)
        policy = await eventually(
            lambda: cluster.policy("gateway"),
            lambda p: condition(p, "Ready").get("status") == "True",
            timeout=20,
            what="Ready",
        )
        assert policy["status"]["observedGeneration"] == 1
        other = await eventually(
            lambda: cluster.policy("elsewhere"),
            lambda p: condition(p, "Degraded").get("status") == "True",
            what="elsewhere Degraded",
        )
        assert condition(other, "Degraded")["reason"] in ("Conflict", "UnmanagedTarget")

        def get(url: str) -> tuple[int, str]:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read().decode()

        assert (await asyncio.to_thread(get, f"http://127.0.0.1:{health}/healthz"))[0] == 200
        status, text = await asyncio.to_thread(get, f"http://127.0.0.1:{metrics}/metrics")
        assert status == 200 and "roomgate_operator_policy_publishes_total" in text
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.proc.wait, 15) == 0
    finally:
        proc.stop(timeout=5)
    lines = [json.loads(line) for line in proc.output().splitlines() if line.startswith("{")]
    assert any(line.get("service") == "operator" for line in lines), proc.output()[-2000:]
    assert "Traceback" not in proc.output(), proc.output()[-3000:]


async def test_a_lagging_gateway_is_reported_and_told_again(
    cluster: Cluster, redis: Any, redis_url: str
) -> None:
    """A gateway that reports an older generation keeps Applied False (Pending) and hears
    the PUBLISH again; once it reports the policy's generation, Applied turns True. A policy
    without spec.scaling never touches the replicas (Scaling False, Disabled)."""
    await cluster.create_pod("gateway-x")
    await write_presence(redis, "gateway-x", 4, generation=0)
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.POLICY_CHANGED_CHANNEL)
    await cluster.ok("POST", POLICIES, gateway_policy("gateway", limits={"maxConnectionsPerIp": 6}))
    with run_operator(cluster, redis_url):
        policy = await eventually(
            lambda: cluster.policy("gateway"),
            lambda p: condition(p, "Applied").get("reason") == "Pending",
            what="Applied Pending",
        )
        assert condition(policy, "Applied")["status"] == "False"
        assert condition(policy, "Ready")["status"] == "False"
        assert condition(policy, "Scaling")["reason"] == "Disabled"
        told = 0
        deadline = time.monotonic() + 5
        while told < 2 and time.monotonic() < deadline:  # the first PUBLISH, then a nudge
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            told += msg is not None
        assert told >= 2
        await write_presence(redis, "gateway-x", 4, generation=1)
        policy = await eventually(
            lambda: cluster.policy("gateway"),
            lambda p: condition(p, "Applied").get("status") == "True",
            what="Applied",
        )
        assert condition(policy, "Ready")["status"] == "True"
        assert policy["status"]["podConnections"] == {"gateway-x": 4}
        assert "desiredReplicas" not in policy["status"]
    await pubsub.aclose()
    assert (await cluster.ok("GET", DEPLOYMENTS + "/gateway"))["spec"]["replicas"] == 1
