"""Connection lifecycle through real WebSocket clients: auth (query and message), deadlines,
unreachable auth, welcome, personal rooms, agents' presence events, heartbeat, token expiry
and refresh."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed
from websockets.frames import Opcode

from tests.gateway.conftest import Stack, recv, recv_until, running_stack, send

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def closed_with(ws: websockets.ClientConnection, timeout: float = 5.0) -> int:
    """Read until the server closes; return the close code."""

    async def drain() -> None:
        while True:
            await ws.recv()

    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(drain(), timeout)
    assert ws.close_code is not None
    return ws.close_code


async def test_welcome_carries_identity_timings_and_limits(stack: Stack) -> None:
    """Token in the query -> welcome with user, session, permissions, heartbeat, server time, limits."""
    token = stack.token("42", perms=("view_system",), session="777")
    ws = await websockets.connect(f"{stack.url}?token={token}")
    stack.clients.append(ws)
    hello = await recv(ws)
    assert hello["type"] == "welcome"
    assert UUID.match(hello["id"])
    assert ISO.match(hello["timestamp"])
    assert hello["sender"] == "gateway"
    data = hello["data"]
    assert data["user_id"] == "42"
    assert data["session_id"] == "777"
    assert data["kind"] == "user"
    assert data["permissions"] == ["view_system"]
    assert data["heartbeat_interval"] == stack.settings.heartbeat_interval
    assert abs(data["server_time"] - time.time()) < 60  # Unix seconds, this machine's clock
    assert data["limits"]["maxConnectionsPerIp"] == stack.settings.max_connections_per_ip
    personal = {(await recv(ws))["room"], (await recv(ws))["room"]}
    assert personal == {"user-42", "session-777"}


async def test_token_in_first_auth_message(stack: Stack) -> None:
    """Without a query token, the first `auth` message authenticates."""
    ws = await websockets.connect(stack.url)
    stack.clients.append(ws)
    await send(ws, {"type": "ping"})
    err = await recv(ws)
    assert err["type"] == "error"
    assert err["data"]["code"] == "not_authenticated"
    await send(ws, {"type": "auth", "token": stack.token("5")})
    hello = await recv(ws)
    assert hello["type"] == "welcome"
    assert hello["data"]["user_id"] == "5"


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiI0MiJ9."])
async def test_invalid_token_closes_4001(stack: Stack, token: str) -> None:
    """A forged or malformed token gets `error unauthorized` with the reason, then close 4001."""
    ws = await websockets.connect(f"{stack.url}?token={token}")
    err = await recv(ws)
    assert err["data"]["code"] == "unauthorized"
    assert err["data"]["reason"]
    assert await closed_with(ws) == 4001


async def test_expired_token_closes_4001(stack: Stack) -> None:
    """An expired token is refused with reason `expired`."""
    stack.auth.policy.clock = lambda: 1_000_000.0  # mint in the distant past
    try:
        token = stack.token("42", ttl=60)
    finally:
        import time

        stack.auth.policy.clock = time.time
    ws = await websockets.connect(f"{stack.url}?token={token}")
    err = await recv(ws)
    assert err["data"]["reason"] == "expired"
    assert await closed_with(ws) == 4001


@pytest.mark.gateway_settings(auth_deadline=0.3)
async def test_no_auth_in_time_closes_4001(stack: Stack) -> None:
    """A connection that never authenticates is closed 4001 after the auth deadline."""
    ws = await websockets.connect(stack.url)
    assert await closed_with(ws) == 4001


async def test_auth_unreachable_closes_1013_and_opens_the_breaker(redis_url: str) -> None:
    """Auth down -> 1013 (try again later), not 4001; after N failures the breaker fails fast."""
    from roomgate_tools.procs import free_port

    async with running_stack(
        redis_url, auth_timeout=0.3, auth_breaker_failures=2, auth_breaker_recovery=60
    ) as stack:
        await stack.gateway.auth.close()
        stack.gateway.auth = type(stack.gateway.auth)(  # nothing listens there
            f"127.0.0.1:{free_port()}", timeout=0.3, breaker_failures=2, breaker_recovery=60
        )
        for _ in range(3):
            ws = await websockets.connect(f"{stack.url}?token=whatever")
            assert await closed_with(ws) == 1013
        assert stack.gateway.auth.breaker.state.value == "open"


async def test_tokens_never_reach_the_logs(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    """Neither a valid nor a rejected token appears in any log record."""
    caplog.set_level(logging.DEBUG)
    good = stack.token("42")
    ws = await stack.connect(good)
    await ws.close()
    bad_ws = await websockets.connect(f"{stack.url}?token={good}x")
    await closed_with(bad_ws)
    server_side = [r for r in caplog.records if not r.name.startswith("websockets.client")]
    assert any("WebSocket" in r.getMessage() for r in server_side)  # uvicorn did log the path
    text = "\n".join(r.getMessage() + str(r.__dict__) for r in server_side)
    assert good not in text
    assert good[:-10] not in text


async def test_personal_rooms_receive_messages(stack: Stack) -> None:
    """user-{id} and session-{id} are joined at connect and deliver."""
    ws = await stack.connect(stack.token("42", session="9"))
    await stack.publish("user-42", "task_created", {"task_id": 1})
    await stack.publish("session-9", "task_created", {"task_id": 2})
    a = await recv_until(ws, lambda m: m["type"] == "task_created")
    b = await recv_until(ws, lambda m: m["type"] == "task_created")
    assert {a["room"], b["room"]} == {"user-42", "session-9"}


async def test_agent_connect_and_disconnect_events(stack: Stack) -> None:
    """An agent's connection produces agent_connected and agent_disconnected in agents and agent-{id}."""
    watcher = await stack.connect(stack.token("1", perms=("view_agents", "view_all_agents")))
    for room in ("agents", "agent-7"):
        await send(watcher, {"type": "subscribe", "data": {"room": room}})
        assert (await recv(watcher))["type"] == "subscribed"
    agent = await stack.connect(stack.token("7", kind="agent", perms=()))
    seen = {(m["room"], m["type"]) for m in [await recv(watcher), await recv(watcher)]}
    assert seen == {("agents", "agent_connected"), ("agent-7", "agent_connected")}
    await agent.close()
    seen = {(m["room"], m["type"]) for m in [await recv(watcher), await recv(watcher)]}
    assert seen == {("agents", "agent_disconnected"), ("agent-7", "agent_disconnected")}


async def test_ping_pong_echoes_timestamp_and_correlation(stack: Stack) -> None:
    """pong echoes the client's timestamp and the request's correlation_id."""
    ws = await stack.connect()
    await send(ws, {"type": "ping", "timestamp": 1234567, "metadata": {"correlation_id": "c-1"}})
    pong = await recv(ws)
    assert pong["type"] == "pong"
    assert pong["data"]["timestamp"] == 1234567
    assert pong["metadata"]["correlation_id"] == "c-1"
    assert ISO.match(pong["timestamp"])


def drop_pongs(ws: Any) -> None:
    """Make a websockets client answer no protocol ping (it answers them on its own)."""
    send_frame = ws.protocol.send_frame
    ws.protocol.send_frame = lambda f: None if f.opcode is Opcode.PONG else send_frame(f)


@pytest.mark.gateway_settings(heartbeat_interval=0.2, heartbeat_timeout=0.6)
async def test_silent_connection_is_closed_4008(stack: Stack) -> None:
    """A client that sends nothing and answers no ping for longer than the heartbeat timeout is closed 4008; a pinging one stays."""
    silent = await stack.connect(ping_interval=None)
    drop_pongs(silent)
    chatty = await stack.connect(stack.token("43"))

    async def keep_pinging() -> None:
        for _ in range(8):
            await send(chatty, {"type": "ping"})
            await asyncio.sleep(0.15)

    pinger = asyncio.create_task(keep_pinging())
    assert await closed_with(silent, timeout=5) == 4008
    await pinger
    assert chatty.close_code is None


@pytest.mark.gateway_settings(token_expiry_warning=0.5)
async def test_token_expiring_warning_then_close(stack: Stack) -> None:
    """token_expiring arrives before expiry; without refresh the connection closes 4001."""
    ws = await stack.connect(stack.token("42", ttl=2))
    warning = await recv_until(ws, lambda m: m["type"] == "token_expiring", timeout=4)
    assert warning["data"]["seconds_left"] <= 1
    assert await closed_with(ws, timeout=4) == 4001


@pytest.mark.gateway_settings(token_expiry_warning=0.5)
async def test_refresh_extends_the_connection(stack: Stack) -> None:
    """A `refresh` with a new token for the same principal keeps the connection past the old expiry."""
    ws = await stack.connect(stack.token("42", ttl=2))
    await send(
        ws,
        {
            "type": "refresh",
            "token": stack.token("42", ttl=60),
            "metadata": {"correlation_id": "r"},
        },
    )
    done = await recv_until(ws, lambda m: m["type"] == "token_refreshed")
    assert done["metadata"]["correlation_id"] == "r"
    await asyncio.sleep(2.5)
    await send(ws, {"type": "ping"})
    assert (await recv_until(ws, lambda m: m["type"] == "pong"))["type"] == "pong"


async def test_refresh_for_another_principal_is_refused(stack: Stack) -> None:
    """A refresh token for someone else is refused and the connection keeps its identity."""
    ws = await stack.connect(stack.token("42"))
    await send(ws, {"type": "refresh", "token": stack.token("43")})
    err = await recv(ws)
    assert err["data"]["code"] == "refresh_failed"
    assert err["data"]["reason"] == "principal_mismatch"


@pytest.mark.gateway_settings(heartbeat_interval=0.2, heartbeat_timeout=0.6)
async def test_pongs_to_protocol_pings_keep_a_connection_alive(stack: Stack) -> None:
    """A client that sends no data frame but answers the gateway's WebSocket pings (a hidden browser tab) stays connected past the heartbeat timeout."""
    quiet = await stack.connect(ping_interval=None)  # sends no ping of its own either
    await asyncio.sleep(0.6 * 4)
    assert quiet.close_code is None
    await send(quiet, {"type": "ping", "timestamp": 1})  # and it still works
    assert (await recv_until(quiet, lambda m: m["type"] == "pong"))["data"]["timestamp"] == 1


@pytest.mark.gateway_settings(heartbeat_interval=0.2, heartbeat_timeout=0.6)
async def test_unanswered_protocol_ping_closes_4008(stack: Stack) -> None:
    """A client that sends data but answers no WebSocket ping is closed 4008 by the ping timeout (not uvicorn's 1011)."""
    ws = await stack.connect(ping_interval=None)
    drop_pongs(ws)

    async def keep_sending() -> None:
        with contextlib.suppress(ConnectionClosed):
            for _ in range(40):
                await send(ws, {"type": "ping"})
                await asyncio.sleep(0.1)

    sender = asyncio.create_task(keep_sending())
    assert await closed_with(ws, timeout=5) == 4008
    sender.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sender
