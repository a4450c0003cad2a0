"""Limits enforced cluster-wide through Redis (per IP, per user, messages per minute),
per connection (subscriptions) and per gateway (rooms), and live policy changes applied to
running gateways without a restart."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from roomgate_common import keys
from roomgate_common.redis_adapter import connect

from tests.gateway.conftest import Stack, recv, recv_until, send
from tests.gateway.test_fanout import second_gateway
from tests.gateway.test_lifecycle import closed_with


async def refused(stack: Stack, url: str) -> tuple[str, int]:
    ws = await websockets.connect(url)
    err = await recv(ws)
    return err["data"]["code"], await closed_with(ws)


@pytest.mark.gateway_settings(max_connections_per_ip=2, max_connections_per_user=100)
async def test_connections_per_ip_across_gateways(stack: Stack) -> None:
    """The per-IP limit counts connections on every gateway; the next one gets an error then 4029."""
    async with second_gateway(stack, max_connections_per_ip=2, max_connections_per_user=100) as two:
        await stack.connect(stack.token("1"))
        await two.connect(stack.token("2"))
        code, close = await refused(stack, f"{stack.url}?token={stack.token('3')}")
        assert (code, close) == ("connection_limit", 4029)
        code, close = await refused(two, f"{two.url}?token={stack.token('4')}")
        assert (code, close) == ("connection_limit", 4029)
        await stack.clients[0].close()
        for _ in range(50):  # the slot is released when the server sees the close
            if not stack.gateway.connections:
                break
            await asyncio.sleep(0.02)
        await stack.connect(stack.token("5"))


@pytest.mark.gateway_settings(max_connections_per_user=2)
async def test_connections_per_user(stack: Stack) -> None:
    """A user may hold max_connections_per_user connections; another user is unaffected."""
    await stack.connect(stack.token("42"))
    await stack.connect(stack.token("42"))
    assert (await refused(stack, f"{stack.url}?token={stack.token('42')}")) == (
        "connection_limit",
        4029,
    )
    await stack.connect(stack.token("43"))


@pytest.mark.gateway_settings(messages_per_user_per_minute=3)
async def test_message_rate_error_then_close(stack: Stack) -> None:
    """Past the per-minute rate a message gets `rate_limited`; at twice the rate the connection closes 4030."""
    ws = await stack.connect()
    for _ in range(3):
        await send(ws, {"type": "subscribe", "data": {"room": "system"}})
        assert (await recv(ws))["type"] == "subscribed"
    await send(ws, {"type": "subscribe", "data": {"room": "system"}})
    err = await recv(ws)
    assert err["data"]["code"] == "rate_limited"
    assert 0 < err["data"]["retry_after"] <= 60
    await send(ws, {"type": "ping"})
    assert (await recv(ws))["type"] == "pong"  # heartbeats are never rate limited
    for _ in range(2):
        await send(ws, {"type": "subscribe", "data": {"room": "system"}})
    assert await closed_with(ws) == 4030


@pytest.mark.gateway_settings(messages_per_user_per_minute=3)
async def test_message_rate_is_shared_by_a_users_connections(stack: Stack) -> None:
    """The rate is per user, cluster-wide: two connections of one user share it."""
    a = await stack.connect(stack.token("42"))
    b = await stack.connect(stack.token("42"))
    for ws in (a, b, a):
        await send(ws, {"type": "subscribe", "data": {"room": "system"}})
        assert (await recv(ws))["type"] == "subscribed"
    await send(b, {"type": "subscribe", "data": {"room": "system"}})
    assert (await recv(b))["data"]["code"] == "rate_limited"


@pytest.mark.gateway_settings(max_subscriptions_per_connection=3)
async def test_subscriptions_per_connection(stack: Stack) -> None:
    """Personal rooms count; past the limit subscribe gets too_many_subscriptions."""
    ws = await stack.connect()  # user-42 and session-N already joined
    await send(ws, {"type": "subscribe", "data": {"room": "system"}})
    assert (await recv(ws))["type"] == "subscribed"
    await send(ws, {"type": "subscribe", "data": {"room": "tasks"}})
    err = await recv(ws)
    assert err["data"]["code"] == "too_many_subscriptions"


@pytest.mark.gateway_settings(max_rooms_per_gateway=3)
async def test_rooms_per_gateway(stack: Stack) -> None:
    """A gateway serving max_rooms_per_gateway rooms refuses a new room, not one it already serves."""
    ws = await stack.connect()  # 2 personal rooms
    await send(ws, {"type": "subscribe", "data": {"room": "system"}})
    assert (await recv(ws))["type"] == "subscribed"
    other = await stack.connect(stack.token("43", perms=("view_system", "view_tasks")))
    await send(other, {"type": "subscribe", "data": {"room": "system"}})
    assert (await recv_until(other, lambda m: m["type"] in ("subscribed", "error")))[
        "type"
    ] == "subscribed"
    await send(other, {"type": "subscribe", "data": {"room": "tasks"}})
    assert (await recv(other))["data"]["code"] == "gateway_room_limit"


async def set_policy(redis_url: str, generation: int, limits: dict[str, object]) -> None:
    redis = connect(redis_url)
    await redis.hset(
        keys.LIVE_POLICY, mapping={"generation": generation, "limits": json.dumps(limits)}
    )
    await redis.publish(keys.POLICY_CHANGED_CHANNEL, str(generation))
    await redis.aclose()


async def test_live_policy_applies_without_restart(stack: Stack) -> None:
    """A new policy in Redis changes the limits of the running gateway; live connections stay."""
    first = await stack.connect(stack.token("1"))
    await stack.connect(stack.token("2"))
    await set_policy(
        stack.redis_url, 4, {"maxConnectionsPerIp": 2, "maxSubscriptionsPerConnection": 2}
    )
    for _ in range(100):
        if stack.gateway.limits.generation == 4:
            break
        await asyncio.sleep(0.02)
    assert stack.gateway.limits.max_connections_per_ip == 2
    assert (await refused(stack, f"{stack.url}?token={stack.token('3')}")) == (
        "connection_limit",
        4029,
    )
    await send(first, {"type": "subscribe", "data": {"room": "system"}})
    assert (await recv(first))["data"]["code"] == "too_many_subscriptions"
    redis = connect(stack.redis_url)
    for _ in range(100):
        applied = await redis.hget(keys.gateway_presence("gw-test"), "applied_generation")
        if applied == b"4":
            break
        await asyncio.sleep(0.05)
    await redis.aclose()
    assert applied == b"4"  # reported for the operator


async def test_gateway_that_starts_later_reads_the_policy(redis_url: str) -> None:
    """The live policy in Redis is applied at start."""
    from tests.gateway.conftest import running_stack

    await set_policy(redis_url, 9, {"maxConnectionsPerUser": 1})
    async with running_stack(redis_url) as stack:
        assert stack.gateway.limits.generation == 9
        assert stack.gateway.limits.max_connections_per_user == 1
        await stack.connect(stack.token("42"))
        assert (await refused(stack, f"{stack.url}?token={stack.token('42')}")) == (
            "connection_limit",
            4029,
        )


async def test_counts_of_a_dead_gateway_are_forgotten(stack: Stack) -> None:
    """Connection counts left by a gateway that stopped heartbeating are removed by the others."""
    redis = connect(stack.redis_url)
    ghost_keys = keys.gateway_count_keys("ghost")
    await redis.hset(keys.conn_count_ip("127.0.0.1"), "ghost", 50)
    await redis.sadd(ghost_keys, keys.conn_count_ip("127.0.0.1"))
    await redis.zadd(keys.GATEWAYS, {"ghost": 1.0})
    for _ in range(100):
        if not await redis.hexists(keys.conn_count_ip("127.0.0.1"), "ghost"):
            break
        await asyncio.sleep(0.05)
    assert not await redis.hexists(keys.conn_count_ip("127.0.0.1"), "ghost")
    await redis.aclose()
    await stack.connect()


async def handshakes_down_to(stack: Stack, count: int) -> None:
    for _ in range(100):
        if stack.gateway.handshakes.count == count:
            return
        await asyncio.sleep(0.02)
    assert stack.gateway.handshakes.count == count


@pytest.mark.gateway_settings(max_pending_connects=2)
async def test_handshakes_beyond_the_bound_are_closed_1013_at_once(stack: Stack) -> None:
    """MAX_PENDING_CONNECTS handshakes (accept -> welcome) run at once; the next connection
    is closed 1013 `Gateway busy` right away, and a slot frees when a handshake ends (here:
    a client that authenticates with its first `auth` message)."""
    waiting = [await websockets.connect(stack.url) for _ in range(2)]  # no token yet
    for _ in range(50):
        if stack.gateway.handshakes.count == 2:
            break
        await asyncio.sleep(0.02)
    assert stack.gateway.handshakes.count == 2
    busy = await websockets.connect(f"{stack.url}?token={stack.token('7')}")
    assert await closed_with(busy) == 1013
    assert busy.close_reason == "Gateway busy"
    await send(waiting[0], {"type": "auth", "token": stack.token("8")})
    assert (await recv(waiting[0]))["type"] == "welcome"
    await handshakes_down_to(stack, 1)  # after its personal rooms and mailbox
    ws = await stack.connect(stack.token("9"))  # the slot is free again
    await send(ws, {"type": "ping"})
    assert (await recv_until(ws, lambda m: m["type"] == "pong"))["type"] == "pong"
    await waiting[1].close()
    await handshakes_down_to(stack, 0)  # a client gone mid-handshake frees its slot
    busy_total = stack.gateway.metrics.connects.labels("busy")._value.get()
    assert busy_total == 1
