"""Client messages through real WebSocket clients: validation errors that keep the
connection open, size limits, subscriptions through roomauthz, client publishing with
acks, batches, compression both ways."""

from __future__ import annotations

import asyncio
import base64
import json
import zlib

import pytest
from roomgate.roomauthz.v1 import roomauthz_pb2, roomauthz_pb2_grpc

from tests.gateway.conftest import ADMIN, Stack, recv, recv_until, send
from tests.gateway.test_lifecycle import closed_with


def deflate(message: dict[str, object] | bytes) -> str:
    raw = message if isinstance(message, bytes) else json.dumps(message).encode()
    return base64.b64encode(zlib.compress(raw)).decode()


async def still_open(ws: object) -> None:
    await send(ws, {"type": "ping", "timestamp": 1})  # type: ignore[arg-type]
    assert (await recv_until(ws, lambda m: m["type"] == "pong"))["data"]["timestamp"] == 1  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "malformed_json"),
        ('"just a string"', "invalid_message"),
        ('{"type": "teleport"}', "unknown_type"),
        ('{"type": "subscribe", "data": {"room": 7}}', "invalid_message"),
        ('{"type": "subscribe", "data": {}}', "invalid_message"),
        ('{"type": "agent_status", "room": "agents", "data": "x"}', "invalid_message"),
        ('{"type": "ack"}', "invalid_message"),
        ('{"type": "auth", "token": "x"}', "already_authenticated"),
    ],
)
async def test_bad_messages_get_an_error_and_the_connection_stays(
    stack: Stack, frame: str, code: str
) -> None:
    """Malformed JSON, unknown types, wrong field types -> `error` with the code; still open."""
    ws = await stack.connect()
    await ws.send(frame)
    err = await recv(ws)
    assert err["type"] == "error"
    assert err["data"]["code"] == code
    assert "Traceback" not in err["data"]["message"]
    await still_open(ws)


async def test_error_refers_to_the_offending_message(stack: Stack) -> None:
    """The error carries ref_id (the message id) and the correlation_id."""
    ws = await stack.connect()
    await send(
        ws,
        {
            "type": "subscribe",
            "id": "m-7",
            "data": {"room": "nowhere"},
            "metadata": {"correlation_id": "c-7"},
        },
    )
    err = await recv(ws)
    assert err["data"]["ref_id"] == "m-7"
    assert err["metadata"]["correlation_id"] == "c-7"


@pytest.mark.gateway_settings(max_message_bytes=1024)
async def test_oversize_frame_closes_1009(stack: Stack) -> None:
    """A frame above the message size limit closes the connection with 1009."""
    ws = await stack.connect()
    await send(ws, {"type": "ping", "pad": "x" * 2000})
    assert await closed_with(ws) == 1009


async def test_subscribe_unsubscribe_roundtrip(stack: Stack) -> None:
    """subscribe -> subscribed (correlated); unsubscribe -> unsubscribed; then no more messages."""
    ws = await stack.connect()
    await send(
        ws, {"type": "subscribe", "data": {"room": "tasks"}, "metadata": {"correlation_id": "s1"}}
    )
    ok = await recv(ws)
    assert (ok["type"], ok["room"], ok["metadata"]["correlation_id"]) == (
        "subscribed",
        "tasks",
        "s1",
    )
    await send(ws, {"type": "unsubscribe", "data": {"room": "tasks"}})
    bye = await recv(ws)
    assert (bye["type"], bye["data"]["reason"]) == ("unsubscribed", "client")
    await stack.publish("tasks", "task_created", {"task_id": 1})
    assert await recv(ws, timeout=0.5, default=None) is None
    await send(ws, {"type": "unsubscribe", "data": {"room": "tasks"}})
    assert (await recv(ws))["data"]["code"] == "not_subscribed"


@pytest.mark.parametrize(
    ("room", "code", "reason"),
    [
        ("agents", "permission_denied", "missing_permission"),
        ("user-43", "permission_denied", "not_owner"),
        ("agent-01", "invalid_room", "unknown_room"),
        ("../etc/passwd", "invalid_room", "unknown_room"),
        ("agent-٣", "invalid_room", "unknown_room"),
    ],
)
async def test_subscription_refused_by_roomauthz(
    stack: Stack, room: str, code: str, reason: str
) -> None:
    """roomauthz decides; refusals carry the reason and the connection stays open."""
    ws = await stack.connect(stack.token("42", perms=("view_system",)))
    await send(ws, {"type": "subscribe", "data": {"room": room}})
    err = await recv(ws)
    assert (err["data"]["code"], err["data"]["reason"], err["data"]["room"]) == (code, reason, room)
    await still_open(ws)


async def test_acl_change_evicts_with_reason(stack: Stack) -> None:
    """Removing the agent from the user's group evicts the agent-{id} subscription with a reason."""
    import grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.authz.port}") as channel:
        admin = roomauthz_pb2_grpc.AclAdminServiceStub(channel)
        entry = roomauthz_pb2.AclEntry(
            relation=roomauthz_pb2.RELATION_AGENT_GROUP, subject_id="7", object_id="3"
        )
        md = (("authorization", f"Bearer {ADMIN}"),)
        await admin.ChangeAcl(roomauthz_pb2.ChangeAclRequest(add=[entry]), metadata=md)
        ws = await stack.connect(stack.token("42", groups=("3",)))
        await send(ws, {"type": "subscribe", "data": {"room": "agent-7"}})
        assert (await recv(ws))["type"] == "subscribed"
        await admin.ChangeAcl(roomauthz_pb2.ChangeAclRequest(remove=[entry]), metadata=md)
        evicted = await recv_until(ws, lambda m: m["type"] == "unsubscribed", timeout=5)
    assert evicted["room"] == "agent-7"
    assert evicted["data"]["reason"] == "not_in_agent_group"
    await stack.publish("agent-7", "agent_status", {"status": "online"})
    assert await recv(ws, timeout=0.5, default=None) is None


async def test_agent_publishes_status_with_ack(stack: Stack) -> None:
    """An agent publishes its own status; subscribers get it with the agent as sender; the agent gets an ack."""
    watcher = await stack.connect(stack.token("1", perms=("view_agents",)))
    await send(watcher, {"type": "subscribe", "data": {"room": "agents"}})
    await recv_until(watcher, lambda m: m["type"] == "subscribed")
    agent = await stack.connect(stack.token("7", kind="agent", perms=()))
    await recv_until(watcher, lambda m: m["type"] == "agent_connected")
    await send(
        agent,
        {
            "type": "agent_status",
            "id": "cli-1",
            "room": "agents",
            "data": {"status": "online", "cpu_usage": 15.2},
            "requiresAck": True,
            "metadata": {"priority": "high", "correlation_id": "k"},
        },
    )
    ack = await recv_until(agent, lambda m: m["type"] == "ack")
    assert ack["ackId"] == "cli-1"
    assert ack["metadata"]["correlation_id"] == "k"
    got = await recv_until(watcher, lambda m: m["type"] == "agent_status")
    assert got["sender"] == "agent-7"
    assert got["id"] == ack["data"]["id"]
    assert got["data"] == {"status": "online", "cpu_usage": 15.2}
    assert got["metadata"]["priority"] == "high"
    assert got["metadata"]["offset"] == ack["data"]["offset"]


@pytest.mark.parametrize(
    ("kind", "uid", "type_", "room"),
    [
        ("agent", "7", "agent_status", "agent-8"),
        ("agent", "7", "alert_escalated", "alerts"),
        ("user", "42", "agent_status", "agents"),
        ("user", "42", "alert_triggered", "alerts"),
    ],
)
async def test_publish_refused(stack: Stack, kind: str, uid: str, type_: str, room: str) -> None:
    """Publishing outside what roomauthz allows is refused with publish_not_allowed."""
    ws = await stack.connect(stack.token(uid, kind=kind, perms=("view_system", "view_agents")))
    await send(ws, {"type": type_, "room": room, "data": {}, "id": "p1"})
    err = await recv_until(ws, lambda m: m["type"] == "error")
    assert err["data"]["code"] == "publish_not_allowed"
    assert err["data"]["ref_id"] == "p1"


async def test_batch_is_processed_in_order_with_a_result_each(stack: Stack) -> None:
    """A batch's messages are handled in order; each gets its own answer, errors included."""
    ws = await stack.connect()
    await send(
        ws,
        {
            "type": "batch",
            "messages": [
                {"type": "subscribe", "data": {"room": "system"}},
                {"type": "nope"},
                {"type": "ping", "timestamp": 5},
                {"type": "batch", "messages": []},
            ],
        },
    )
    answers = [await recv(ws) for _ in range(4)]
    assert [a["type"] for a in answers] == ["subscribed", "error", "pong", "error"]
    assert answers[1]["data"]["code"] == "unknown_type"
    assert answers[3]["data"]["code"] == "nesting_not_allowed"


@pytest.mark.gateway_settings(max_batch_messages=3)
async def test_batch_too_large(stack: Stack) -> None:
    """A batch above the documented maximum is refused whole."""
    ws = await stack.connect()
    await send(ws, {"type": "batch", "messages": [{"type": "ping"}] * 4})
    assert (await recv(ws))["data"]["code"] == "batch_too_large"
    await still_open(ws)


async def test_compressed_message_is_accepted(stack: Stack) -> None:
    """A `compressed` frame (base64 zlib of a message) is inflated and handled."""
    ws = await stack.connect()
    await send(
        ws,
        {"type": "compressed", "data": deflate({"type": "subscribe", "data": {"room": "system"}})},
    )
    assert (await recv(ws))["type"] == "subscribed"


@pytest.mark.gateway_settings(max_inflated_bytes=65536)
async def test_compression_bomb_is_refused_and_memory_stays_flat(stack: Stack) -> None:
    """A 10 MB bomb in a small frame gets inflated_too_large; the connection survives."""
    ws = await stack.connect()
    bomb = deflate(b"{" + b" " * 10_000_000 + b"}")
    assert len(bomb) < 30_000
    await send(ws, {"type": "compressed", "data": bomb})
    err = await recv(ws)
    assert err["data"]["code"] == "inflated_too_large"
    await send(ws, {"type": "compressed", "data": "%%%"})
    assert (await recv(ws))["data"]["code"] == "compression_error"
    await still_open(ws)


@pytest.mark.gateway_settings(compression_threshold=256)
async def test_outbound_compression_for_clients_that_ask(stack: Stack) -> None:
    """With ?compress=1, messages above the threshold arrive as `compressed`; small ones plain."""
    ws = await stack.connect(query="compress=1")
    plain = await stack.connect(stack.token("43"))
    for client in (ws, plain):
        await send(client, {"type": "subscribe", "data": {"room": "system"}})
        await recv(client)
    sent = await stack.publish("system", "inventory_refresh", {"packages": ["pkg"] * 200})
    frame = await recv(ws)
    assert frame["type"] == "compressed"
    inner = json.loads(zlib.decompress(base64.b64decode(frame["data"])))
    assert inner["id"] == sent.id
    assert (await recv(plain))["id"] == sent.id
    await stack.publish("system", "metrics_update", {"x": 1})
    assert (await recv(ws))["type"] == "metrics_update"


async def test_messages_past_their_ttl_are_not_delivered(stack: Stack) -> None:
    """A message whose ttl has already passed when it reaches the gateway is dropped (and counted)."""
    from datetime import UTC, datetime, timedelta

    from roomgate_common.envelope import make_envelope

    ws = await stack.connect()
    await send(ws, {"type": "subscribe", "data": {"room": "system"}})
    await recv(ws)
    old = make_envelope(
        "metrics_update",
        sender="t",
        room="system",
        metadata={"ttl": 5},
        now=datetime.now(UTC) - timedelta(seconds=10),
    )
    from roomgate_common.publisher import Publisher
    from roomgate_common.redis_adapter import connect

    redis = connect(stack.redis_url)
    await Publisher(redis, sender="t").publish_envelope(old)
    fresh = await stack.publish("system", "metrics_update", {"n": 2}, ttl=60)
    await redis.aclose()
    got = await recv(ws)
    assert got["id"] == fresh.id
    assert stack.gateway.metrics.drops.labels("expired")._value.get() >= 1


async def test_server_never_sends_exception_text(stack: Stack) -> None:
    """Even odd-but-valid input yields documented errors, never internal details."""
    ws = await stack.connect()
    for frame in [
        '{"type":"subscribe","data":{"room":"\\u0000"}}',
        '{"type":"ping","timestamp":"' + "9" * 60 + '"}',
    ]:
        await ws.send(frame)
        reply = await recv(ws)
        assert reply["type"] in ("error", "pong")
        assert "Traceback" not in json.dumps(reply)
    await asyncio.sleep(0)


@pytest.mark.gateway_settings(authz_cache_ttl=60)
async def test_authz_decisions_are_cached_and_acl_changes_clear_the_cache(stack: Stack) -> None:
    """A repeated subscribe is answered from the cache; an ACL change invalidates a cached denial at once."""
    import grpc

    ws = await stack.connect(stack.token("42", groups=("3",)))
    for _ in range(2):
        await send(ws, {"type": "subscribe", "data": {"room": "system"}})
        assert (await recv(ws))["type"] == "subscribed"
    samples = stack.gateway.metrics.authz_latency.collect()[0].samples
    assert next(s.value for s in samples if s.name.endswith("_count")) == 1  # 2nd from cache
    await send(ws, {"type": "subscribe", "data": {"room": "agent-7"}})
    assert (await recv(ws))["data"]["reason"] == "not_in_agent_group"  # cached for 60 s...
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.authz.port}") as channel:
        admin = roomauthz_pb2_grpc.AclAdminServiceStub(channel)
        entry = roomauthz_pb2.AclEntry(
            relation=roomauthz_pb2.RELATION_AGENT_GROUP, subject_id="7", object_id="3"
        )
        await admin.ChangeAcl(
            roomauthz_pb2.ChangeAclRequest(add=[entry]),
            metadata=(("authorization", f"Bearer {ADMIN}"),),
        )
    for _ in range(50):  # ...but the ACL event clears it
        await send(ws, {"type": "subscribe", "data": {"room": "agent-7"}})
        if (await recv(ws))["type"] == "subscribed":
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the ACL change did not clear the cached denial")


async def subscribe_together(stack: Stack, count: int) -> tuple[float, float]:
    """``count`` clients subscribe at once, even users to their own room (allowed), odd ones
    to someone else's (denied); each must get its own answer. Returns (roomauthz decisions,
    AuthorizeBatch calls)."""
    clients = [await stack.connect(stack.token(str(i + 1))) for i in range(count)]
    for i, ws in enumerate(clients):
        room = f"user-{i + 1}" if i % 2 == 0 else f"user-{i + 100}"
        await send(ws, {"type": "subscribe", "data": {"room": room}})
    replies = [await recv(ws) for ws in clients]
    for i, reply in enumerate(replies):
        if i % 2 == 0:
            assert reply["type"] == "subscribed", reply
        else:
            assert reply["type"] == "error" and reply["data"]["code"] == "permission_denied"
    decisions = sum(
        s.value
        for s in stack.authz.metrics.decisions.collect()[0].samples
        if s.name.endswith("_total")
    )
    calls = next(
        s.value
        for s in stack.authz.metrics.latency.collect()[0].samples
        if s.name.endswith("_count") and s.labels["method"] == "AuthorizeBatch"
    )
    return decisions, calls


@pytest.mark.gateway_settings(max_connections_per_ip=100, authz_calls_in_flight=1)
async def test_concurrent_subscribes_are_authorised_in_batches(stack: Stack) -> None:
    """Subscribes of many clients asked for together reach roomauthz as a few
    AuthorizeBatch calls (one ACL read each), and each client gets its own decision."""
    decisions, calls = await subscribe_together(stack, 30)
    assert decisions == 30
    assert calls < 30  # asked for while a call was on its way: batched


@pytest.mark.gateway_settings(
    max_connections_per_ip=100, authz_calls_in_flight=1, authz_batch_max=4
)
async def test_a_batch_holds_at_most_authz_batch_max_decisions(stack: Stack) -> None:
    """AUTHZ_BATCH_MAX caps a batch: 20 decisions take at least 5 calls of 4."""
    decisions, calls = await subscribe_together(stack, 20)
    assert decisions == 20
    assert calls >= 5
