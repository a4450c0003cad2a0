"""Issue 11, finding 15: deeply nested JSON is refused before decoding, with a documented code,
on every gateway entry (WebSocket before and after auth, batch, compressed, HTTP and gRPC
publish); the connection stays open and nothing is logged as a traceback."""

from __future__ import annotations

import base64
import logging
import zlib
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from roomgate.gateway.v1 import publish_pb2, publish_pb2_grpc

from tests.gateway.conftest import Stack, recv, send
from tests.security.edge import grpc_channel, marked_stack


@pytest.fixture
async def stack(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    async with marked_stack(redis_url, request) as s:
        yield s


DEEP = "[" * 5000 + "]" * 5000  # ~10 KB: RecursionError in msgspec without the bound


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_deep_frame_before_auth_keeps_the_connection(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """A deep frame before `auth` gets `error` json_too_deep; `auth` afterwards still works."""
    ws = await stack.connect(token="", welcome=False)
    await ws.send('{"type": "auth", "data": {"token": ' + DEEP + "}}")
    error = await recv(ws)
    assert (error["type"], error["data"]["code"]) == ("error", "json_too_deep")
    await send(ws, {"type": "auth", "token": stack.token()})
    assert (await recv(ws))["type"] == "welcome"
    _no_tracebacks(caplog)


async def test_deep_frames_after_auth_in_batch_and_compressed(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """Deep JSON as a frame, inside a batch and inside compressed: json_too_deep each time."""
    ws = await stack.connect()
    event = '{"type": "agent_status", "room": "system", "data": {"x": ' + DEEP + "}}"
    frames = [
        event,
        '{"type": "batch", "messages": [' + event + "]}",
        '{"type": "batch", "messages": [{"type": "ping", "data": {"timestamp": 1}, "x": '
        + "[" * 40
        + "]" * 40
        + "}]}",
        '{"type": "compressed", "data": "'
        + base64.b64encode(zlib.compress(event.encode())).decode()
        + '"}',
    ]
    for frame in frames:
        await ws.send(frame)
        error = await recv(ws)
        assert (error["type"], error["data"]["code"]) == ("error", "json_too_deep"), frame[:80]
    await send(ws, {"type": "ping", "timestamp": 7})
    pong = await recv(ws)
    assert (pong["type"], pong["data"]["timestamp"]) == ("pong", 7)
    _no_tracebacks(caplog)


@pytest.mark.gateway_settings(grpc_listen="127.0.0.1:0")
async def test_deep_publish_bodies_are_invalid_argument(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """HTTP publish answers 400 json_too_deep, gRPC publish INVALID_ARGUMENT (not 500/UNKNOWN)."""
    service = stack.token("svc", kind="service", perms=("publish",))
    async with httpx.AsyncClient(base_url=stack.http) as http:
        reply = await http.post(
            "/api/v1/publish",
            content='{"room": "tasks", "type": "task_progress", "data": {"x": ' + DEEP + "}}",
            headers={"Authorization": f"Bearer {service}"},
        )
    assert (reply.status_code, reply.json()["error"]["code"]) == (400, "json_too_deep")
    async with grpc_channel(stack.app.state.grpc_port) as channel:
        stub = publish_pb2_grpc.PublishServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Publish(
                publish_pb2.PublishRequest(
                    room="tasks", type="task_progress", data_json=('{"x": ' + DEEP + "}").encode()
                ),
                metadata=(("authorization", f"Bearer {service}"),),
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("json_too_deep")
    _no_tracebacks(caplog)
