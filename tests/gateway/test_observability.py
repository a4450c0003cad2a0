"""Health, readiness, metrics and traces: one trace covers publisher -> bus -> gateway ->
client, with the W3C traceparent riding in the envelope's metadata through Redis."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from roomgate_common.publisher import Publisher
from roomgate_common.redis_adapter import connect

from tests.gateway.conftest import (
    Stack,
    gateway_settings,
    recv,
    recv_until,
    send,
    services,
    start_gateway,
    stop_gateway,
)


@contextlib.asynccontextmanager
async def traced_stack(
    redis_url: str,
) -> AsyncIterator[tuple[Stack, TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with services(redis_url) as (auth, authz):
        settings = gateway_settings(redis_url, auth.port, authz.port)
        server, port, app = await start_gateway(
            settings, tracer=provider.get_tracer("roomgate.gateway")
        )
        stack = Stack(redis_url, auth, authz, settings, server, port, app)
        try:
            yield stack, provider, exporter
        finally:
            for ws in stack.clients:
                await ws.close()
            await stop_gateway(server)


async def test_one_trace_from_publisher_to_client(redis_url: str) -> None:
    """publish span -> deliver span (child, same trace) -> the client sees the same trace id."""
    async with traced_stack(redis_url) as (stack, provider, exporter):
        ws = await stack.connect()
        await send(ws, {"type": "subscribe", "data": {"room": "system"}})
        await recv(ws)
        redis = connect(redis_url)
        publisher = Publisher(redis, sender="backend", tracer=provider.get_tracer("backend"))
        sent = await publisher.publish("system", "metrics_update", {"cpu": 3})
        await redis.aclose()
        got = await recv_until(ws, lambda m: m["type"] == "metrics_update")
        spans = {s.name: s for s in exporter.get_finished_spans()}
        publish, deliver = spans["publish"], spans["deliver"]
        trace_id = f"{publish.context.trace_id:032x}"
        assert got["id"] == sent.id
        assert got["metadata"]["traceparent"].split("-")[1] == trace_id
        assert deliver.context.trace_id == publish.context.trace_id
        assert deliver.parent is not None
        assert deliver.parent.span_id == publish.context.span_id
        assert deliver.attributes["roomgate.room"] == "system"
        assert {"connect", "auth", "subscribe"} <= set(spans)


async def test_client_publish_continues_the_clients_trace(redis_url: str) -> None:
    """A client's traceparent is continued by the gateway's client_publish span and carried on."""
    async with traced_stack(redis_url) as (stack, _provider, exporter):
        watcher = await stack.connect(stack.token("1", perms=("view_agents",)))
        await send(watcher, {"type": "subscribe", "data": {"room": "agents"}})
        await recv(watcher)
        agent = await stack.connect(stack.token("7", kind="agent", perms=()))
        await recv_until(watcher, lambda m: m["type"] == "agent_connected")
        client_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        await send(
            agent,
            {
                "type": "agent_status",
                "room": "agents",
                "data": {"s": 1},
                "metadata": {"traceparent": f"00-{client_trace}-00f067aa0ba902b7-01"},
            },
        )
        got = await recv_until(watcher, lambda m: m["type"] == "agent_status")
        assert got["metadata"]["traceparent"].split("-")[1] == client_trace
        names = {
            s.name
            for s in exporter.get_finished_spans()
            if f"{s.context.trace_id:032x}" == client_trace
        }
        assert {"client_publish", "deliver"} <= names


async def test_health_readiness_and_metrics(stack: Stack) -> None:
    """/healthz answers; /readyz checks Redis and auth; /metrics exposes the gateway's series."""
    ws = await stack.connect()
    await send(ws, {"type": "subscribe", "data": {"room": "system"}})
    await recv(ws)
    await stack.publish("system", "metrics_update", {})
    await recv(ws)
    async with httpx.AsyncClient(base_url=stack.http) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"not_draining": True, "redis": True, "auth": True}
        text = (await http.get("/metrics")).text
    for series in [
        "roomgate_gateway_connections 1.0",
        'roomgate_gateway_connects_total{outcome="ok"} 1.0',
        'roomgate_gateway_messages_in_total{type="subscribe"} 1.0',
        'roomgate_gateway_messages_out_total{type="welcome"} 1.0',
        "roomgate_gateway_deliveries_total 1.0",
        "roomgate_gateway_delivery_latency_seconds_count 1.0",
        "roomgate_gateway_auth_latency_seconds_count 1.0",
        "roomgate_gateway_authz_latency_seconds_count 1.0",
        "roomgate_gateway_redis_up 1.0",
        "roomgate_gateway_queue_depth",
        "roomgate_gateway_event_loop_lag_seconds_count",
        "roomgate_gateway_rooms 3.0",
    ]:
        assert series in text, series


async def readyz_while_redis_is_paused(stack: Stack) -> httpx.Response:
    """/readyz after one good PING, asked while Redis holds every client's commands
    (CLIENT PAUSE: a Redis busy past the check's timeout, its connections still open)."""
    redis = connect(stack.redis_url, name="test-pause")
    try:
        async with httpx.AsyncClient(base_url=stack.http) as http:
            assert (await http.get("/readyz")).status_code == 200
            await redis.execute_command("CLIENT", "PAUSE", 2000, "ALL")
            try:
                return await http.get("/readyz")
            finally:
                await redis.execute_command("CLIENT", "UNPAUSE")
    finally:
        await redis.aclose()


@pytest.mark.gateway_settings(ready_check_timeout=0.3, ready_grace=0)
async def test_readiness_fails_when_redis_does_not_answer_in_time(stack: Stack) -> None:
    """With no grace, a PING that gets no answer within READY_CHECK_TIMEOUT is not ready."""
    ready = await readyz_while_redis_is_paused(stack)
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"] is False


@pytest.mark.gateway_settings(ready_check_timeout=0.3, ready_grace=60)
async def test_readiness_outlives_a_busy_redis_for_the_grace(stack: Stack) -> None:
    """A PING that is only slow counts as Redis's last good answer within READY_GRACE: a
    busy Redis does not take every gateway out of the load balancer at once."""
    ready = await readyz_while_redis_is_paused(stack)
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"not_draining": True, "redis": True, "auth": True}


async def test_readiness_fails_when_auth_is_down(stack: Stack) -> None:
    """/readyz is 503 while the auth service does not answer."""
    await stack.auth.grpc.stop(0)
    async with httpx.AsyncClient(base_url=stack.http) as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["auth"] is False
