"""The local stack (``roomgate dev``'s, as real processes) with a real Jaeger and a real
Prometheus (``make obs-tools``; missing binaries fail these tests):

* one HTTP publish with a caller's ``traceparent`` is one trace in Jaeger, of the shape
  caller -> publish API -> auth and roomauthz (client and server spans) -> publish -> each
  gateway's ``deliver``, with no orphan roots;
* after traffic through the stack (and an operator reconciling a GatewayPolicy for the stack's
  gateways against a real API server), every PromQL expression of every dashboard panel,
  variables substituted, returns data from Prometheus;
* stopping auth opens the gateway's breaker and RoomgateAuthBreakerOpen fires; stopping Redis
  fires RoomgateRedisUnreachable (the chart's rules, with ``for:`` cut to 1 s in a test copy).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from roomgate_common import keys
from roomgate_common.redis_adapter import connect as redis_connect
from roomgate_tools.observability import (
    ALERT_RULES,
    DEV_NAMESPACE,
    DEV_RELEASE,
    JaegerQuery,
    PrometheusAPI,
    PromQLError,
    find_obs_binary,
)
from roomgate_tools.procs import ProcessError, free_port
from roomgate_tools.stack import LocalStack, StackConfig, StackPorts
from websockets.asyncio.client import ClientConnection

from tests.operator.conftest import (
    DEPLOYMENTS,
    POLICIES,
    Cluster,
    eventually,
    gateway_policy,
    run_operator,
)

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "roomgate" / "files" / "dashboard.json"
GATEWAYS = ("gw-1", "gw-2")
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
OPERATOR_METRICS = free_port()
# Dashboard variables as a user picks them: this release, every gateway pod.
VARIABLES = {
    "$namespace": DEV_NAMESPACE,
    "$release": DEV_RELEASE,
    "$pod": ".*",
    "$__rate_interval": "3m",  # the whole test's traffic (Grafana's is >= 4 scrape intervals)
    "$__range": "10m",
}


def fast_rules(directory: Path) -> Path:
    """The chart's alerting rules with every ``for:`` cut to 1 s (expressions unchanged)."""
    text = re.sub(r"(?m)^(\s+for:) \S+$", r"\1 1s", ALERT_RULES.read_text())
    path = directory / "alerts-fast.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    for tool in ("jaeger", "prometheus"):
        try:
            find_obs_binary(tool)
        except ProcessError as exc:
            pytest.fail(str(exc))
    state = tmp_path_factory.mktemp("obsstack")
    config = StackConfig(
        state_dir=state,
        ports=StackPorts.free(),
        secrets={
            "ROOMGATE_JWT_HS256_SECRET": secrets.token_urlsafe(48),
            "ROOMGATE_ADMIN_SECRET": secrets.token_urlsafe(32),
            "ROOMGATE_JWT_ISSUER": "roomgate-obs-test",
            "ROOMGATE_JWT_AUDIENCE": "roomgate",
        },
        gateway_ids=GATEWAYS,
        escalation=True,
        drain_seconds=0.5,
        gateway_env={
            "ROOMGATE_OUTBOUND_QUEUE_SIZE": "64",
            "ROOMGATE_AUTH_BREAKER_FAILURES": "2",
            "ROOMGATE_PRESENCE_INTERVAL": "0.5",
        },
        observability=True,
        rule_files=[fast_rules(state)],
        extra_scrape_targets=[(f"127.0.0.1:{OPERATOR_METRICS}", "operator", "operator-0")],
    )
    local = LocalStack(config)
    local.start(timeout=180)
    try:
        # Prometheus hands new targets to its scrapers after up to 5 s (discovery updates are
        # throttled): traffic before the first scrape would leave every counter flat.
        deadline = time.monotonic() + 60
        while not scraping(local.prometheus):
            assert time.monotonic() < deadline, local.prometheus.targets()
            time.sleep(0.5)
        yield local
    finally:
        local.stop()
    assert not [c.name for c in local.components if c.process.running]


def scraping(prom: PrometheusAPI) -> bool:
    """Every service (the operator aside: it runs in one test) scraped and up."""
    targets = [t for t in prom.targets() if t["labels"]["pod"] != "operator-0"]
    return len(targets) == 5 and all(t["health"] == "up" for t in targets)


# ------------------------------------------------------------------------------ helpers
async def recv_until(
    ws: ClientConnection, match: Callable[[dict[str, Any]], bool], timeout: float = 10.0
) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            batch = message.get("type") == "batch"
            for item in message.get("messages", []) if batch else [message]:
                if match(item):
                    return dict(item)


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def client(
    stack: LocalStack, gateway: str, uid: str, perms: tuple[str, ...] = ("view_system",), **kw: Any
) -> ClientConnection:
    """A client straight to one gateway (not through HAProxy: each gateway gets its share)."""
    port = stack.ports.gateways[GATEWAYS.index(gateway)]
    token = stack.token(uid, perms=perms, **kw)
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws?token={token}", **_ws_options(kw))
    assert (await recv_until(ws, lambda m: True))["type"] == "welcome"
    return ws


def _ws_options(kw: dict[str, Any]) -> dict[str, Any]:
    return {"open_timeout": 10, "max_size": None}


async def subscribe(ws: ClientConnection, room: str, **data: Any) -> dict[str, Any]:
    await send(ws, {"type": "subscribe", "data": {"room": room, **data}})
    return await recv_until(
        ws,
        lambda m: (
            m["type"] == "error" or (m["type"] == "subscribed" and m["data"].get("room") == room)
        ),
    )


async def publish(
    http: httpx.AsyncClient,
    stack: LocalStack,
    room: str,
    type_: str,
    data: dict[str, Any],
    *,
    traceparent: str | None = None,
    priority: str = "normal",
) -> dict[str, Any]:
    """POST /api/v1/publish through HAProxy with a fresh service token (no cached auth)."""
    token = stack.token(f"svc-{secrets.token_hex(3)}", kind="service", perms=("publish",))
    headers = {"Authorization": f"Bearer {token}"}
    if traceparent:
        headers["traceparent"] = traceparent
    body = {"room": room, "type": type_, "data": data, "metadata": {"priority": priority}}
    reply = await http.post(f"{stack.lb_http}/api/v1/publish", json=body, headers=headers)
    assert reply.status_code == 202, reply.text
    return dict(reply.json())


async def wait_for(probe: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(probe)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def clients(*conns: ClientConnection) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for ws in conns:
            await ws.close()


# --------------------------------------------------------------------------- traces
def tree(trace: dict[str, Any]) -> list[str]:
    """The trace as lines ``service span-name (kind) <- parent-name``, depth-indented."""
    spans = {s["spanID"]: s for s in trace["spans"]}
    procs = trace["processes"]

    def parent(s: dict[str, Any]) -> str | None:
        refs = [r for r in s.get("references", []) if r["refType"] == "CHILD_OF"]
        return refs[0]["spanID"] if refs else None

    def label(s: dict[str, Any]) -> str:
        proc = procs[s["processID"]]
        tags = {t["key"]: t["value"] for t in proc.get("tags", [])}
        instance = tags.get("service.instance.id")
        kind = next((t["value"] for t in s.get("tags", []) if t["key"] == "span.kind"), "internal")
        who = proc["serviceName"] + (f"[{instance}]" if instance else "")
        return f"{who} {s['operationName']} ({kind})"

    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans.values():
        p = parent(s)
        children.setdefault(p if p in spans else None, []).append(s)
    lines: list[str] = []

    def walk(s: dict[str, Any], depth: int) -> None:
        p = parent(s)
        note = "" if p in spans else f"  <- parent {p} (not in the trace: the caller's)"
        lines.append("  " * depth + label(s) + note)
        for c in sorted(children.get(s["spanID"], []), key=lambda c: c["startTime"]):
            walk(c, depth + 1)

    for root in sorted(children.get(None, []), key=lambda c: c["startTime"]):
        walk(root, 0)
    return lines


async def test_one_publish_is_one_trace_in_jaeger(stack: LocalStack) -> None:
    """HTTP publish with a caller traceparent -> Jaeger returns one tree rooted at the caller's
    span: the publish API, auth and roomauthz as children, Redis publish, both gateways' deliver."""
    subs = [await client(stack, gw, str(100 + i)) for i, gw in enumerate(GATEWAYS)]
    async with clients(*subs):
        for ws in subs:
            assert (await subscribe(ws, "system"))["type"] == "subscribed"
        async with httpx.AsyncClient(timeout=10) as http:
            sent = await publish(
                http,
                stack,
                "system",
                "metrics_update",
                {"cpu": 1},
                traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
            )
        for ws in subs:
            got = await recv_until(ws, lambda m: m.get("id") == sent["id"])
            assert got["metadata"]["traceparent"].split("-")[1] == CALLER_TRACE

    jaeger: JaegerQuery = stack.jaeger

    def complete() -> dict[str, Any] | None:
        trace = jaeger.trace(CALLER_TRACE)
        if trace is None:
            return None
        names = [s["operationName"] for s in trace["spans"]]
        servers = sum(1 for n in names if n.startswith("/roomgate."))
        return trace if names.count("deliver") == 2 and servers >= 4 else None

    trace = await wait_for(complete, "the whole trace in Jaeger")
    lines = tree(trace)
    print("\ntrace " + CALLER_TRACE + " as Jaeger returned it:\n" + "\n".join(lines))
    (stack.state_dir / "trace.txt").write_text("\n".join(lines) + "\n")

    spans = {s["spanID"]: s for s in trace["spans"]}
    service = {sid: trace["processes"][s["processID"]]["serviceName"] for sid, s in spans.items()}
    assert {"roomgate-gateway", "roomgate-auth", "roomgate-roomauthz"} <= set(service.values())

    def parent_of(s: dict[str, Any]) -> str:
        (ref,) = [r for r in s["references"] if r["refType"] == "CHILD_OF"]
        return str(ref["spanID"])

    def kind(s: dict[str, Any]) -> str:
        return next((t["value"] for t in s["tags"] if t["key"] == "span.kind"), "internal")

    # No orphan roots: only the publish API's span has a parent outside the trace (the caller).
    outside = [s for s in spans.values() if parent_of(s) not in spans]
    assert [s["operationName"] for s in outside] == ["POST /api/v1/publish"]
    assert parent_of(outside[0]) == CALLER_SPAN
    root = outside[0]["spanID"]

    def named(name: str, k: str | None = None) -> list[dict[str, Any]]:
        return [
            s for s in spans.values() if s["operationName"] == name and (k is None or kind(s) == k)
        ]

    auth_method = "/roomgate.auth.v1.AuthService/AuthenticateBatch"
    authz_method = "/roomgate.roomauthz.v1.RoomAuthzService/AuthorizeBatch"
    (auth_span,) = named("auth")
    assert parent_of(auth_span) == root
    (auth_client,) = named(auth_method, "client")
    (auth_server,) = named(auth_method, "server")
    assert parent_of(auth_client) == auth_span["spanID"]
    assert parent_of(auth_server) == auth_client["spanID"]
    assert service[auth_server["spanID"]] == "roomgate-auth"
    (authz_client,) = named(authz_method, "client")
    (authz_server,) = named(authz_method, "server")
    assert parent_of(authz_client) == root
    assert parent_of(authz_server) == authz_client["spanID"]
    assert service[authz_server["spanID"]] == "roomgate-roomauthz"
    (bus_publish,) = named("publish", "producer")
    assert parent_of(bus_publish) == root
    delivers = named("deliver")
    assert [parent_of(d) for d in delivers] == [bus_publish["spanID"]] * 2
    instances = {
        next(
            t["value"]
            for t in trace["processes"][d["processID"]]["tags"]
            if t["key"] == "service.instance.id"
        )
        for d in delivers
    }
    assert instances == set(GATEWAYS)  # each gateway's fan-out


async def test_escalation_continues_the_alerts_trace(stack: LocalStack) -> None:
    """alert_triggered published with a traceparent -> escalation consumes it, its timer fires a
    second later and publishes alert_escalated: all in the caller's trace, one tree."""
    trace_id = "5bf92f3577b34da6a3ce929d0e0e4737"
    async with httpx.AsyncClient(timeout=10) as http:
        await publish(
            http,
            stack,
            "alerts",
            "alert_triggered",
            {
                "alert_id": "trace-1",
                "severity": "critical",
                "title": "disk full",
                "actions": [{"type": "escalate", "delay": 1, "target": "team-7"}],
            },
            traceparent=f"00-{trace_id}-{CALLER_SPAN}-01",
            priority="high",
        )

    def escalated() -> dict[str, Any] | None:
        trace = stack.jaeger.trace(trace_id)
        names = {s["operationName"] for s in (trace or {}).get("spans", [])}
        return trace if "publish alert_escalated" in names else None

    trace = await wait_for(escalated, "alert_escalated in the alert's trace", 30)
    lines = tree(trace)
    print("\ntrace " + trace_id + " (alert_triggered -> alert_escalated):\n" + "\n".join(lines))
    spans = {s["spanID"]: s for s in trace["spans"]}
    by_name = {s["operationName"]: s for s in spans.values()}
    service = {n: trace["processes"][s["processID"]]["serviceName"] for n, s in by_name.items()}

    def parent_name(name: str) -> str:
        (ref,) = [r for r in by_name[name]["references"] if r["refType"] == "CHILD_OF"]
        return str(spans[ref["spanID"]]["operationName"]) if ref["spanID"] in spans else "caller"

    assert service["consume alert_triggered"] == "roomgate-escalation"
    assert parent_name("consume alert_triggered") == "publish"  # the gateway's, through Redis
    assert parent_name("publish") == "POST /api/v1/publish"
    assert parent_name("POST /api/v1/publish") == "caller"
    assert parent_name("publish alert_escalated") == "escalate"
    assert service["escalate"] == "roomgate-escalation"
    roots = [s for s in spans.values() if all(r["spanID"] not in spans for r in s["references"])]
    assert [s["operationName"] for s in roots] == ["POST /api/v1/publish"]


# ------------------------------------------------------------------------ dashboard
# Panels the traffic above must move off zero, not only fill (the rest may read 0 legitimately
# at the moment of the query: queue depth, errors of a healthy stack, draining gateways...).
NONZERO = {
    ("Active connections per gateway", "B"),
    ("Connection establishment rate by outcome", "A"),
    ("Connection duration", "A"),
    ("Reconnections (subscribe with since)", "A"),
    ("Closes by code", "A"),
    ("Slow-consumer closes", "A"),
    ("Messages per second", "A"),
    ("Messages per second", "B"),
    ("Delivery latency (publish → socket)", "A"),
    ("Failed deliveries by reason", "A"),
    ("Errors sent to clients by code", "A"),
    ("Memory per connection", "A"),
    ("Bandwidth", "A"),
    ("Bandwidth", "B"),
    ("Redis memory", "A"),
    ("Auth latency", "A"),
    ("Room authorisation latency", "A"),
    ("gRPC requests by service and code", "A"),
    ("Escalations", "A"),
    ("Escalations", "B"),
    ("Policy generation: wanted vs applied", "A"),
    ("Policy generation: wanted vs applied", "B"),
    ("Scaling decisions", "A"),
    ("Scaling decisions", "C"),
    ("Drain", "A"),
    ("Observed connections and live gateways", "A"),
}


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(panel title, refId, expression with the variables substituted) of every panel."""
    d = json.loads(DASHBOARD.read_text())
    out = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            expr = t["expr"]
            for var, value in VARIABLES.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, (p["title"], expr)
            out.append((p["title"], t["refId"], expr))
    return out


async def drive_traffic(stack: LocalStack) -> list[ClientConnection]:
    """Every kind of traffic a panel shows: connects (and refusals), reconnects with since
    (recovered and not), publishes over HTTP and by clients, errors, closes, a slow consumer,
    an escalation."""
    async with httpx.AsyncClient(timeout=10) as http:
        first = await publish(http, stack, "system", "metrics_update", {"n": 0})
        watchers = [
            await client(stack, gw, f"2{g}{i}") for g, gw in enumerate(GATEWAYS) for i in range(2)
        ]
        for ws in watchers[1:]:
            await subscribe(ws, "system")
        # reconnects: one recovers the gap from history, one cannot (the epoch is gone)
        recovered = await subscribe(
            watchers[0], "system", since={"offset": first["offset"], "epoch": first["epoch"]}
        )
        assert recovered["data"]["recovered"] is True, recovered
        late = await client(stack, "gw-2", "299")
        watchers.append(late)
        lost = await subscribe(late, "system", since={"offset": 1, "epoch": "not-this-one"})
        assert lost["data"]["recovered"] is False, lost["data"]
        for i in range(20):
            await publish(http, stack, "system", "metrics_update", {"n": i})
        # a client publishing (agent status) and a refused one, and invalid input
        agent = await client(stack, "gw-1", "7", perms=(), kind="agent")
        await send(agent, {"type": "agent_status", "room": "agent-7", "data": {"s": "ok"}})
        await send(agent, {"type": "ping"})
        await agent.send("not json")
        await recv_until(agent, lambda m: m["type"] == "error")
        await agent.close()
        # a refused connection (bad token) on each gateway
        for port in stack.ports.gateways:
            ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws?token=bad", open_timeout=10)
            with contextlib.suppress(websockets.ConnectionClosed):
                await recv_until(ws, lambda m: m["type"] == "error", timeout=5)
            await ws.close()
        await slow_consumer(http, stack)
        for ws in watchers:  # client messages well after the first ones (rate() sees them)
            await send(ws, {"type": "ping"})
            await recv_until(ws, lambda m: m["type"] == "pong")
        # an escalation one second after its trigger
        await publish(
            http,
            stack,
            "alerts",
            "alert_triggered",
            {
                "alert_id": "obs-1",
                "severity": "critical",
                "title": "disk full",
                "actions": [{"type": "escalate", "delay": 1, "target": "team-7"}],
            },
            priority="high",
        )
        await asyncio.sleep(2.5)
        # closes (and their durations); the rest stay connected: the real gateways are
        # never the emptiest pods when the operator scales down
        for ws in watchers[3:]:
            await ws.close()
        return watchers[:3]


async def slow_consumer(http: httpx.AsyncClient, stack: LocalStack) -> None:
    """A client that stops reading while its room gets 10 MB: its queue overflows, it is
    closed 1013 and its messages count as drops."""
    port = stack.ports.gateways[0]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    token = stack.token("77", perms=("view_tasks",))
    slow = await websockets.connect(
        f"ws://127.0.0.1:{port}/ws?token={token}", sock=sock, max_size=None, open_timeout=10
    )
    await recv_until(slow, lambda m: m["type"] == "welcome")
    assert (await subscribe(slow, "tasks"))["type"] == "subscribed"
    slow.transport.pause_reading()  # type: ignore[attr-defined]
    blob = {"blob": "x" * 32_000}
    for _ in range(320):
        await publish(http, stack, "tasks", "task_progress", blob, priority="high")
    slow.transport.resume_reading()  # type: ignore[attr-defined]
    with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
        async with asyncio.timeout(20):
            while True:
                await slow.recv()
    assert slow.close_code == 1013, slow.close_code


@contextlib.asynccontextmanager
async def operator_scenario(stack: LocalStack, cluster: Cluster) -> AsyncIterator[None]:
    """An operator (metrics on OPERATOR_METRICS, scraped as the release's operator) reconciles
    a GatewayPolicy for the stack's gateways: generation applied, a scale-up from reported
    connections, then a scale-down that drains the emptiest pod (a fake one, gw-3)."""
    for name in (*GATEWAYS, "gw-3"):
        await cluster.create_pod(name)
    await cluster.ok(
        "PATCH", DEPLOYMENTS + "/gateway", {"spec": {"replicas": 3}},
        content_type="application/merge-patch+json",
    )  # fmt: skip
    redis = redis_connect(stack.redis_url)

    async def presence(connections: int, generation: int) -> None:
        await redis.hset(
            keys.gateway_presence("gw-3"),
            mapping={
                "connections": connections,
                "rooms": 0,
                "applied_generation": generation,
                "draining": 0,
                "ts": time.time(),
            },
        )
        await redis.expire(keys.gateway_presence("gw-3"), 120)

    try:
        with run_operator(cluster, stack.redis_url, metrics_listen=f"127.0.0.1:{OPERATOR_METRICS}"):
            spec = {
                "limits": {"maxConnectionsPerIp": 1000, "maxConnectionsPerUser": 100},
                "scaling": {
                    # 3: a scale-down 4 -> 3 drains only the emptiest pod, the fake one
                    "minReplicas": 3,
                    "maxReplicas": 4,
                    "targetConnectionsPerPod": 10,
                    "scaleUpStabilizationSeconds": 0,
                    "scaleDownStabilizationSeconds": 0,
                    "maxPodsRemovedPerStep": 1,
                    "drainTimeoutSeconds": 5,
                },
            }
            await presence(35, 1)
            await cluster.ok("POST", POLICIES, gateway_policy("gateway", **spec))
            await eventually(cluster.replicas, lambda r: r == 4, timeout=20, what="scale-up to 4")
            await eventually(
                lambda: cluster.policy("gateway"),
                lambda p: p.get("status", {}).get("appliedGeneration") == 1,
                timeout=20,
                what="generation 1 applied by every gateway",
            )
            # Prometheus has the operator's counters at 0 before the drain (else increase()
            # cannot see it: a series born at 1 has no increase)
            await wait_for(
                lambda: stack.prometheus.query("roomgate_operator_drains_total"),
                "the operator scraped",
            )
            await presence(0, 1)  # gw-3 empties: it is drained first
            pubsub = redis.pubsub()
            await pubsub.subscribe(keys.gateway_control_channel("gw-3"))
            await eventually(cluster.replicas, lambda r: r == 3, timeout=20, what="scale-down")
            deadline = time.monotonic() + 10
            drained = False
            while not drained and time.monotonic() < deadline:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                drained = msg is not None
            assert drained, "no drain command for gw-3"
            await pubsub.aclose()
            await asyncio.sleep(3)  # scraped at least twice with the operator's series
            yield  # the operator still running: its gauges are live in Prometheus
    finally:
        await redis.aclose()


async def test_every_dashboard_query_returns_data(stack: LocalStack, cluster: Cluster) -> None:
    """Traffic, then every PromQL expression of every panel (variables substituted) against
    Prometheus: no error, no empty result; the variables' own queries return this release."""
    watchers = await drive_traffic(stack)
    async with clients(*watchers), operator_scenario(stack, cluster):
        report = await evaluate_dashboard(stack)
    # (after the operator: KopfRunner captures stdout while it runs)
    print("\ndashboard queries (series, panel [ref], first values):\n" + "\n".join(report))


async def evaluate_dashboard(stack: LocalStack) -> list[str]:
    prom: PrometheusAPI = stack.prometheus
    up = {t["labels"]["pod"]: t["health"] for t in await asyncio.to_thread(prom.targets)}
    assert set(up) == {*GATEWAYS, "auth-0", "roomauthz-0", "escalation-0", "operator-0"}, up
    assert await asyncio.to_thread(
        prom.label_values, "roomgate_gateway_connections", "namespace"
    ) == [DEV_NAMESPACE]
    assert await asyncio.to_thread(
        prom.label_values, f'roomgate_gateway_connections{{namespace="{DEV_NAMESPACE}"}}', "release"
    ) == [DEV_RELEASE]
    pods = await asyncio.to_thread(
        prom.label_values,
        f'roomgate_gateway_connections{{namespace="{DEV_NAMESPACE}", release="{DEV_RELEASE}"}}',
        "pod",
    )
    assert pods == sorted(GATEWAYS)
    queries = dashboard_queries()
    assert {(title, ref) for title, ref, _ in queries} >= NONZERO
    failures = []
    report = []
    for title, ref, expr in queries:
        try:
            result = await asyncio.to_thread(prom.query, expr)
        except PromQLError as exc:
            failures.append(f"{title} [{ref}]: {exc}\n    {expr}")
            continue
        values = [r["value"][1] for r in result]
        report.append(f"{len(result):3d} series  {title} [{ref}]  e.g. {values[:3]}")
        if not result:
            failures.append(f"{title} [{ref}]: empty\n    {expr}")
        elif (title, ref) in NONZERO and not any(float(v) > 0 for v in values):
            failures.append(f"{title} [{ref}]: all zero after the traffic\n    {expr}")
    (stack.state_dir / "dashboard-queries.txt").write_text("\n".join(report) + "\n")
    assert not failures, "\n".join(failures)
    return report


# --------------------------------------------------------------------------- alerts
def firing(prom: PrometheusAPI, name: str) -> list[dict[str, Any]]:
    return [a for a in prom.alerts() if a["labels"]["alertname"] == name and a["state"] == "firing"]


async def test_rules_loaded_and_quiet_when_healthy(stack: LocalStack) -> None:
    """Prometheus loaded all 8 rules; none of the two below fires on the healthy stack."""
    prom: PrometheusAPI = stack.prometheus
    rules = await asyncio.to_thread(prom.rules)
    assert len([r for r in rules if r["type"] == "alerting"]) == 8
    assert all(r["health"] == "ok" for r in rules), rules
    for name in ("RoomgateAuthBreakerOpen", "RoomgateRedisUnreachable"):
        assert not await asyncio.to_thread(firing, prom, name)


async def test_auth_down_opens_the_breaker_and_the_alert_fires(stack: LocalStack) -> None:
    """Stop auth, connect a few times: the gateway's breaker opens, RoomgateAuthBreakerOpen fires."""
    prom: PrometheusAPI = stack.prometheus
    auth = stack.component("auth")
    auth.process.stop(5)
    port = stack.ports.gateways[0]
    token = stack.token("9")
    for _ in range(4):
        with contextlib.suppress(websockets.ConnectionClosed, TimeoutError, OSError):
            ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws?token={token}", open_timeout=5)
            with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
                await recv_until(ws, lambda m: m["type"] == "error", timeout=5)
            await ws.close()
    alerts = await wait_for(lambda: firing(prom, "RoomgateAuthBreakerOpen"), "breaker alert", 30)
    assert {a["labels"]["pod"] for a in alerts} == {"gw-1"}
    assert alerts[0]["labels"]["severity"] == "critical"
    print(f"\nfiring: {alerts[0]['labels']} {alerts[0]['annotations']['summary']}")


async def test_redis_down_fires_redis_unreachable(stack: LocalStack) -> None:
    """Stop Redis: both gateways' subscribers drop, RoomgateRedisUnreachable fires for each."""
    prom: PrometheusAPI = stack.prometheus
    stack.component("redis").process.stop(5)
    alerts = await wait_for(
        lambda: (
            len(firing(prom, "RoomgateRedisUnreachable")) == 2
            and firing(prom, "RoomgateRedisUnreachable")
        ),
        "redis alert for both gateways",
        40,
    )
    assert {a["labels"]["pod"] for a in alerts} == set(GATEWAYS)
    assert {a["labels"]["release"] for a in alerts} == {DEV_RELEASE}
    print(f"\nfiring: {[a['labels'] for a in alerts]}")
