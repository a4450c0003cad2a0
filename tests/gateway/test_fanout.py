"""Fan-out across gateways through Redis, the publishing APIs (HTTP and gRPC), and the rule
that a gateway subscribes a room's channel only while it has a local member."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from roomgate.gateway.v1 import publish_pb2, publish_pb2_grpc
from roomgate_common import keys
from roomgate_common.redis_adapter import connect

from tests.gateway.conftest import (
    Stack,
    gateway_settings,
    recv,
    recv_until,
    send,
    small_buffer_client,
    start_gateway,
    stop_gateway,
)


@contextlib.asynccontextmanager
async def second_gateway(stack: Stack, **overrides: object) -> AsyncIterator[Stack]:
    settings = gateway_settings(
        stack.redis_url, stack.auth.port, stack.authz.port, gateway_id="gw-two", **overrides
    )
    server, port, app = await start_gateway(settings)
    other = Stack(stack.redis_url, stack.auth, stack.authz, settings, server, port, app)
    try:
        yield other
    finally:
        for ws in other.clients:
            with contextlib.suppress(Exception):
                await ws.close()
        await stop_gateway(server)


async def channel_subscribers(redis_url: str, room: str) -> int:
    redis = connect(redis_url)
    try:
        [(_, count)] = await redis.pubsub_numsub(keys.room_channel(room))
        return int(count)
    finally:
        await redis.aclose()


async def wait_for_subscribers(redis_url: str, room: str, expected: int) -> None:
    for _ in range(100):
        if await channel_subscribers(redis_url, room) == expected:
            return
        await asyncio.sleep(0.02)
    assert await channel_subscribers(redis_url, room) == expected


async def test_message_reaches_subscribers_on_every_gateway(stack: Stack) -> None:
    """One publish reaches a subscriber on each of two gateways, in order."""
    async with second_gateway(stack) as two:
        a = await stack.connect(stack.token("1"))
        b = await two.connect(stack.token("2"))
        for ws in (a, b):
            await send(ws, {"type": "subscribe", "data": {"room": "system"}})
            await recv(ws)
        sent = [await stack.publish("system", "metrics_update", {"n": i}) for i in range(20)]
        for ws in (a, b):
            got = [await recv(ws) for _ in range(20)]
            assert [g["id"] for g in got] == [s.id for s in sent]
            assert [g["metadata"]["offset"] for g in got] == list(range(1, 21))


async def test_channel_subscribed_only_while_a_local_member_exists(stack: Stack) -> None:
    """A gateway subscribes a room's channel with its first local member and drops it with its last."""
    async with second_gateway(stack):
        assert await channel_subscribers(stack.redis_url, "tasks") == 0
        first = await stack.connect(stack.token("1"))
        second = await stack.connect(stack.token("2"))
        for ws in (first, second):
            await send(ws, {"type": "subscribe", "data": {"room": "tasks"}})
            await recv(ws)
        await wait_for_subscribers(
            stack.redis_url, "tasks", 1
        )  # one gateway, one channel subscription
        await send(first, {"type": "unsubscribe", "data": {"room": "tasks"}})
        await recv(first)
        assert await channel_subscribers(stack.redis_url, "tasks") == 1
        await second.close()
        await wait_for_subscribers(stack.redis_url, "tasks", 0)
        assert "tasks" not in stack.gateway.rooms


async def test_http_publish_api(stack: Stack) -> None:
    """POST /api/v1/publish with a service token is delivered; refusals are precise."""
    ws = await stack.connect()
    await send(ws, {"type": "subscribe", "data": {"room": "tasks"}})
    await recv(ws)
    service = stack.token("task-executor", kind="service", perms=("publish",))
    body = {
        "room": "tasks",
        "type": "task_progress",
        "data": {"task_id": 456, "progress": 65},
        "metadata": {"priority": "high", "correlation_id": "task-456-progress"},
    }
    async with httpx.AsyncClient(base_url=stack.http) as http:
        ok = await http.post(
            "/api/v1/publish", json=body, headers={"Authorization": f"Bearer {service}"}
        )
        assert ok.status_code == 202, ok.text
        got = await recv_until(ws, lambda m: m["type"] == "task_progress")
        assert got["id"] == ok.json()["id"]
        assert got["sender"] == "task-executor"
        assert got["metadata"]["correlation_id"] == "task-456-progress"
        assert (await http.post("/api/v1/publish", json=body)).status_code == 401
        user = stack.token("42")
        denied = await http.post(
            "/api/v1/publish", json=body, headers={"Authorization": f"Bearer {user}"}
        )
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "permission_denied"
        bad = await http.post(
            "/api/v1/publish", content=b"{", headers={"Authorization": f"Bearer {service}"}
        )
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_message")
        unknown = await http.post(
            "/api/v1/publish",
            json={**body, "type": "teleport"},
            headers={"Authorization": f"Bearer {service}"},
        )
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (400, "unknown_type")
        room = await http.post(
            "/api/v1/publish",
            json={**body, "room": "nowhere"},
            headers={"Authorization": f"Bearer {service}"},
        )
        assert room.status_code == 403
        huge = await http.post(
            "/api/v1/publish",
            content=json.dumps({**body, "data": {"x": "y" * 70000}}),
            headers={"Authorization": f"Bearer {service}"},
        )
        assert huge.status_code == 413


@pytest.mark.gateway_settings(grpc_listen="127.0.0.1:0")
async def test_grpc_publish_api(stack: Stack) -> None:
    """The gRPC PublishService delivers like the HTTP API and refuses with gRPC status codes."""
    ws = await stack.connect()
    await send(ws, {"type": "subscribe", "data": {"room": "alerts"}})
    await recv(ws)
    service = stack.token("alert-manager", kind="service", perms=("publish",))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.app.state.grpc_port}") as channel:
        stub = publish_pb2_grpc.PublishServiceStub(channel)
        reply = await stub.Publish(
            publish_pb2.PublishRequest(
                room="alerts",
                type="alert_triggered",
                data_json=b'{"alert_id": 789, "severity": "critical"}',
                priority=publish_pb2.PRIORITY_HIGH,
            ),
            metadata=(("authorization", f"Bearer {service}"),),
        )
        got = await recv_until(ws, lambda m: m["type"] == "alert_triggered")
        assert got["id"] == reply.id
        assert got["data"]["alert_id"] == 789
        assert got["metadata"]["priority"] == "high"
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.Publish(
                publish_pb2.PublishRequest(room="alerts", type="alert_triggered", data_json=b"{}")
            )
        assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.Publish(
                publish_pb2.PublishRequest(room="alerts", type="alert_triggered", data_json=b"[1"),
                metadata=(("authorization", f"Bearer {service}"),),
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def flatten(frame: dict[str, object]) -> list[dict[str, object]]:
    """The messages in a frame: a `batch` frame holds several."""
    if frame["type"] == "batch":
        return list(frame["messages"])  # type: ignore[arg-type]
    return [frame]


@pytest.mark.gateway_settings(outbound_queue_size=64)
async def test_slow_consumer_is_closed_and_drops_are_counted(stack: Stack) -> None:
    """A client that stops reading never slows the others: its low traffic is dropped, then it is closed 1013."""
    slow = await small_buffer_client(stack)
    fast = await stack.connect(stack.token("2"))
    await recv(slow)
    for ws in (slow, fast):
        await send(ws, {"type": "subscribe", "data": {"room": "system"}})
    await recv_until(fast, lambda m: m["type"] == "subscribed")
    await asyncio.sleep(0.3)
    slow.transport.pause_reading()  # type: ignore[attr-defined]
    received: list[str] = []

    async def read_fast() -> None:
        while True:
            received.extend(str(m["id"]) for m in flatten(await recv(fast)))

    reader = asyncio.create_task(read_fast())
    payload = {"blob": "x" * 32_000}
    sent_ids = []
    for i in range(400):
        sent = await stack.publish(
            "system", "inventory_refresh", payload, priority="low" if i % 2 else "high"
        )
        sent_ids.append(sent.id)
    for _ in range(200):
        if len(received) >= 400:
            break
        await asyncio.sleep(0.05)
    reader.cancel()
    assert received == sent_ids  # the reading client got everything, in order
    metrics = stack.gateway.metrics
    for _ in range(100):
        if metrics.closes.labels("1013")._value.get() >= 1:
            break
        await asyncio.sleep(0.05)
    assert metrics.drops.labels("queue_full_low")._value.get() > 0
    assert metrics.closes.labels("1013")._value.get() == 1
    assert fast.close_code is None


@pytest.mark.gateway_settings(outbound_queue_size=2048)
async def test_waiting_messages_go_out_as_one_batch(stack: Stack) -> None:
    """When several messages wait for one client, they leave in `batch` frames (≤ OUTBOUND_BATCH_MAX), in order."""
    ws = await small_buffer_client(stack)
    await recv_until(ws, lambda m: m["type"] == "welcome")
    await send(ws, {"type": "subscribe", "data": {"room": "system"}})
    await recv_until(ws, lambda m: m["type"] == "subscribed" and m["room"] == "system")
    ws.transport.pause_reading()  # type: ignore[attr-defined]
    deliveries = stack.gateway.metrics.deliveries._value.get()
    sent = [
        await stack.publish("system", "metrics_update", {"n": i, "pad": "x" * 32000})
        for i in range(400)
    ]
    ws.transport.resume_reading()  # type: ignore[attr-defined]
    frames: list[dict[str, object]] = []
    got: list[str] = []
    while len(got) < len(sent):
        frame = await recv(ws)
        frames.append(frame)
        got.extend(str(m["id"]) for m in flatten(frame) if m.get("type") == "metrics_update")
    assert got == [s.id for s in sent]
    # Counted as written, also what the write-behind task wrote after the socket drained.
    assert stack.gateway.metrics.deliveries._value.get() - deliveries == len(sent)
    batches = [f for f in frames if f["type"] == "batch"]
    assert batches
    assert all(2 <= len(b["messages"]) <= stack.settings.outbound_batch_max for b in batches)  # type: ignore[arg-type]
