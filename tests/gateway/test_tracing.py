"""One publish is one trace: the caller's ``traceparent`` (HTTP header or gRPC metadata) is
continued by the publish API, auth and roomauthz calls are CLIENT spans whose SERVER spans in
auth/roomauthz are their children, and the ``deliver`` span of the gateway is a child of the
``publish`` span whose context rode through Redis. JSON log lines written inside a span carry
its trace and span id."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from roomgate.gateway.v1 import publish_pb2, publish_pb2_grpc
from roomgate_common.logs import setup_logging

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

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


@contextlib.asynccontextmanager
async def traced(redis_url: str) -> AsyncIterator[tuple[Stack, InMemorySpanExporter]]:
    """auth, roomauthz and a gateway (with its gRPC PublishService) on one tracer provider."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with services(redis_url, tracer_provider=provider) as (auth, authz):
        settings = gateway_settings(redis_url, auth.port, authz.port, grpc_listen="127.0.0.1:0")
        server, port, app = await start_gateway(
            settings, tracer=provider.get_tracer("roomgate.gateway")
        )
        stack = Stack(redis_url, auth, authz, settings, server, port, app)
        try:
            yield stack, exporter
        finally:
            for ws in stack.clients:
                await ws.close()
            await stop_gateway(server)
            provider.shutdown()


def of_trace(exporter: InMemorySpanExporter, trace_id: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id]


def assert_one_tree(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    """Every span's parent is the caller's span or another span of the trace."""
    ids = {s.context.span_id for s in spans}
    for s in spans:
        assert s.parent is not None, f"{s.name} is a root: the caller's trace was not continued"
        assert s.parent.span_id in ids or f"{s.parent.span_id:016x}" == CALLER_SPAN, s.name
    return {s.name: s for s in spans}


def parent_name(spans: dict[str, ReadableSpan], span: ReadableSpan) -> str:
    assert span.parent is not None
    for s in spans.values():
        if s.context.span_id == span.parent.span_id:
            return s.name
    return "caller" if f"{span.parent.span_id:016x}" == CALLER_SPAN else "?"


async def test_http_publish_continues_the_callers_trace(redis_url: str) -> None:
    """traceparent header -> POST span -> auth/roomauthz client+server spans -> publish -> deliver."""
    async with traced(redis_url) as (stack, exporter):
        ws = await stack.connect()
        await send(ws, {"type": "subscribe", "data": {"room": "tasks"}})
        await recv(ws)
        service = stack.token("task-executor", kind="service", perms=("publish",))
        async with httpx.AsyncClient(base_url=stack.http) as http:
            ok = await http.post(
                "/api/v1/publish",
                json={"room": "tasks", "type": "task_progress", "data": {"task_id": 1}},
                headers={"Authorization": f"Bearer {service}", "traceparent": TRACEPARENT},
            )
        assert ok.status_code == 202, ok.text
        got = await recv_until(ws, lambda m: m["type"] == "task_progress")
        assert got["metadata"]["traceparent"].split("-")[1] == CALLER_TRACE
        spans = assert_one_tree(of_trace(exporter, CALLER_TRACE))
        http_span = spans["POST /api/v1/publish"]
        assert http_span.kind is SpanKind.SERVER
        assert parent_name(spans, http_span) == "caller"
        # Client and server spans of one call share the method name: tell them by kind.
        by_kind = {(s.name, s.kind): s for s in of_trace(exporter, CALLER_TRACE)}
        auth_server = by_kind[("/roomgate.auth.v1.AuthService/AuthenticateBatch", SpanKind.SERVER)]
        authz_server = by_kind[
            ("/roomgate.roomauthz.v1.RoomAuthzService/AuthorizeBatch", SpanKind.SERVER)
        ]
        auth_client = by_kind[("/roomgate.auth.v1.AuthService/AuthenticateBatch", SpanKind.CLIENT)]
        authz_client = by_kind[
            ("/roomgate.roomauthz.v1.RoomAuthzService/AuthorizeBatch", SpanKind.CLIENT)
        ]
        assert auth_server.parent.span_id == auth_client.context.span_id  # type: ignore[union-attr]
        assert authz_server.parent.span_id == authz_client.context.span_id  # type: ignore[union-attr]
        assert parent_name(spans, auth_client) == "auth"
        assert parent_name(spans, spans["auth"]) == "POST /api/v1/publish"
        assert authz_client.parent.span_id == http_span.context.span_id  # type: ignore[union-attr]
        publish = spans["publish"]
        assert publish.kind is SpanKind.PRODUCER
        assert publish.parent.span_id == http_span.context.span_id  # type: ignore[union-attr]
        assert spans["deliver"].parent.span_id == publish.context.span_id  # type: ignore[union-attr]


@pytest.mark.parametrize("with_parent", [True, False])
async def test_grpc_publish_continues_the_callers_trace(redis_url: str, with_parent: bool) -> None:
    """traceparent call metadata -> PublishService SERVER span -> ... -> deliver; none: a new trace."""
    async with traced(redis_url) as (stack, exporter):
        ws = await stack.connect()
        await send(ws, {"type": "subscribe", "data": {"room": "tasks"}})
        await recv(ws)
        service = stack.token("task-executor", kind="service", perms=("publish",))
        metadata = [("authorization", f"Bearer {service}")]
        if with_parent:
            metadata.append(("traceparent", TRACEPARENT))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.app.state.grpc_port}") as ch:
            await publish_pb2_grpc.PublishServiceStub(ch).Publish(
                publish_pb2.PublishRequest(room="tasks", type="task_progress", data_json=b"{}"),
                metadata=metadata,
                timeout=5,
            )
        got = await recv_until(ws, lambda m: m["type"] == "task_progress")
        trace_id = got["metadata"]["traceparent"].split("-")[1]
        assert (trace_id == CALLER_TRACE) is with_parent
        spans = of_trace(exporter, trace_id)
        names = {s.name for s in spans}
        assert {"/roomgate.gateway.v1.PublishService/Publish", "publish", "deliver"} <= names
        roots = [s for s in spans if s.parent is None]
        assert len(roots) == (0 if with_parent else 1)
        if with_parent:
            assert_one_tree(spans)
        else:
            assert roots[0].name == "/roomgate.gateway.v1.PublishService/Publish"


def test_json_log_lines_carry_the_trace_and_span_id() -> None:
    """Inside a span: trace_id and span_id fields (hex); outside: neither."""
    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging("test")
    out = io.StringIO()
    root.handlers[0].stream = out  # type: ignore[attr-defined]
    try:
        log = logging.getLogger("roomgate.test")
        with tracer.start_as_current_span("work") as span:
            log.info("inside")
        log.info("outside")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    inside, outside = (json.loads(line) for line in out.getvalue().splitlines())
    ctx = span.get_span_context()
    assert inside["trace_id"] == f"{ctx.trace_id:032x}"
    assert inside["span_id"] == f"{ctx.span_id:016x}"
    assert inside["service"] == "test"
    assert "trace_id" not in outside and "span_id" not in outside


async def test_connect_and_subscribe_calls_join_their_spans(redis_url: str) -> None:
    """Authenticate is a child of connect/auth, the AuthorizeBatch of a subscribe a child of
    `subscribe` (not traces of their own)."""
    async with traced(redis_url) as (stack, exporter):
        ws = await stack.connect()
        await send(ws, {"type": "subscribe", "data": {"room": "tasks"}})
        await recv(ws)
        spans = exporter.get_finished_spans()
        by_id = {s.context.span_id: s for s in spans}
        client_calls = [s for s in spans if s.kind is SpanKind.CLIENT]
        assert client_calls
        parents = {}
        for call in client_calls:
            assert call.parent is not None, f"{call.name} started a trace of its own"
            parents[call.name] = by_id[call.parent.span_id].name
        assert parents["/roomgate.auth.v1.AuthService/AuthenticateBatch"] == "auth"
        assert parents["/roomgate.roomauthz.v1.RoomAuthzService/AuthorizeBatch"] == "subscribe"
