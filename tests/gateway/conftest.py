"""The gateway's test stack: a real auth and roomauthz (gRPC on 127.0.0.1:0), the gateway
app under a real uvicorn on port 0, real Redis, and real WebSocket clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
import websockets
from roomgate_auth.server import AuthServer
from roomgate_auth.settings import AuthSettings
from roomgate_common.identity import Principal, PrincipalKind
from roomgate_common.publisher import Publisher
from roomgate_common.redis_adapter import connect
from roomgate_gateway.app import create_app
from roomgate_gateway.main import build_config
from roomgate_gateway.settings import GatewaySettings
from roomgate_roomauthz.server import RoomAuthzServer
from roomgate_roomauthz.settings import RoomAuthzSettings
from websockets.asyncio.client import ClientConnection

SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
ADMIN = "admin-secret-for-tests"
ISSUER = "roomgate-test"
AUDIENCE = "roomgate"


@dataclass
class Stack:
    redis_url: str
    auth: AuthServer
    authz: RoomAuthzServer
    settings: GatewaySettings
    server: uvicorn.Server
    port: int
    app: Any
    clients: list[ClientConnection] = field(default_factory=list)

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(
        self,
        uid: str = "42",
        *,
        kind: str = "user",
        perms: tuple[str, ...] = ("view_system", "view_agents", "view_tasks"),
        groups: tuple[str, ...] = (),
        teams: tuple[str, ...] = (),
        roles: tuple[str, ...] = (),
        ttl: int | None = None,
        session: str = "",
    ) -> str:
        principal = Principal(
            kind=PrincipalKind(kind),
            id=uid,
            session_id=session,
            roles=roles,
            permissions=perms,
            group_ids=groups,
            team_ids=teams,
        )
        token, _ = self.auth.policy.mint(principal, ttl)
        return token

    async def connect(
        self, token: str | None = None, *, query: str = "", welcome: bool = True, **kw: Any
    ) -> ClientConnection:
        """A real WebSocket client; reads the welcome and personal `subscribed` messages."""
        tok = token if token is not None else self.token()
        url = (
            self.url
            + (f"?token={tok}" if tok else "")
            + (("&" if tok else "?") + query if query else "")
        )
        ws = await websockets.connect(url, max_size=None, **kw)
        self.clients.append(ws)
        if welcome:
            hello = await recv(ws)
            assert hello["type"] == "welcome", hello
            while True:  # personal rooms
                msg = await recv(ws, timeout=0.3, default=None)
                if msg is None:
                    break
                assert msg["type"] == "subscribed", msg["data"]
        return ws

    async def publish(
        self,
        room: str,
        type_: str = "metrics_update",
        data: dict[str, Any] | None = None,
        **kw: Any,
    ) -> Any:
        redis = connect(self.redis_url)
        try:
            return await Publisher(redis, sender="test").publish(room, type_, data or {}, **kw)
        finally:
            await redis.aclose()


async def small_buffer_client(stack: Stack, user: str = "1") -> ClientConnection:
    """A client whose socket receives 4 KiB at a time (SO_RCVBUF), so that once it stops
    reading (``ws.transport.pause_reading()``) the gateway's socket soon pushes back."""
    import socket

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", stack.port))
    ws = await websockets.connect(
        f"{stack.url}?token={stack.token(user)}", sock=sock, max_size=None
    )
    stack.clients.append(ws)
    return ws


async def recv(ws: ClientConnection, timeout: float = 5.0, default: Any = ...) -> dict[str, Any]:
    try:
        raw = await asyncio.wait_for(ws.recv(), timeout)
    except TimeoutError:
        if default is not ...:
            return default  # type: ignore[no-any-return]
        raise
    return json.loads(raw)  # type: ignore[no-any-return]


async def recv_until(
    ws: ClientConnection, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = await recv(ws, timeout=max(0.01, deadline - loop.time()))
        if pred(msg):
            return msg


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def start_gateway(
    settings: GatewaySettings, **app_kw: Any
) -> tuple[uvicorn.Server, int, Any]:
    app = create_app(settings, **app_kw)
    config = build_config(settings, app)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    port = server.servers[0].sockets[0].getsockname()[1]
    server._task = task  # type: ignore[attr-defined]
    return server, port, app


def _describe(task: asyncio.Task[Any]) -> str:
    """The task and the chain of awaits it is suspended in."""
    chain = []
    coro: Any = task.get_coro()
    while coro is not None and len(chain) < 20:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return f"{task.get_name()}: {' -> '.join(chain)}"


async def stop_gateway(server: uvicorn.Server) -> None:
    server.should_exit = True
    try:
        await asyncio.wait_for(asyncio.shield(server._task), 20)  # type: ignore[attr-defined]
    except TimeoutError:
        stuck = [_describe(t) for t in asyncio.all_tasks() if "cython" not in repr(t.get_coro())]
        raise AssertionError("gateway did not stop:\n" + "\n".join(stuck)) from None


def gateway_settings(
    redis_url: str, auth_port: int, authz_port: int, **overrides: Any
) -> GatewaySettings:
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "redis_url": redis_url,
        "auth_addr": f"127.0.0.1:{auth_port}",
        "roomauthz_addr": f"127.0.0.1:{authz_port}",
        "gateway_id": "gw-test",
        "authz_cache_ttl": 0.0,
        "presence_interval": 0.5,
        "drain_seconds": 0.2,
        "drain_waves": 2,
        "shutdown_grace": 2.0,
    }
    values.update(overrides)
    return GatewaySettings.from_env(**values)


@contextlib.asynccontextmanager
async def services(
    redis_url: str, *, tracer_provider: Any = None
) -> AsyncIterator[tuple[AuthServer, RoomAuthzServer]]:
    auth = AuthServer(
        AuthSettings.from_env(
            listen="127.0.0.1:0",
            redis_url=redis_url,
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            jwt_hs256_secret=SECRET,
            admin_secret=ADMIN,
            metrics_listen="127.0.0.1:0",
            shutdown_grace=0.5,
        ),
        tracer_provider=tracer_provider,
    )
    authz = RoomAuthzServer(
        RoomAuthzSettings.from_env(
            listen="127.0.0.1:0",
            redis_url=redis_url,
            admin_secret=ADMIN,
            shutdown_grace=0.5,
            acl_cache_ttl=0,
        ),
        tracer_provider=tracer_provider,
    )
    await auth.start()
    await authz.start()
    try:
        yield auth, authz
    finally:
        await authz.stop(0.2)
        await auth.stop()


@contextlib.asynccontextmanager
async def running_stack(
    redis_url: str, *, services_url: str | None = None, **overrides: Any
) -> AsyncIterator[Stack]:
    """auth, roomauthz and a gateway on ``redis_url`` (auth/roomauthz on ``services_url``
    when given, e.g. a gateway on a Redis Cluster beside single-server services)."""
    async with services(services_url or redis_url) as (auth, authz):
        settings = gateway_settings(redis_url, auth.port, authz.port, **overrides)
        server, port, app = await start_gateway(settings)
        # Per-minute rates (connects, messages) count in calendar minutes: the clock that
        # places them stays in the middle of one, so no test straddles a minute's end.
        frozen = time.time() // 60 * 60 + 30
        app.state.gateway.counts.clock = lambda: frozen
        stack = Stack(redis_url, auth, authz, settings, server, port, app)
        try:
            yield stack
        finally:
            for ws in stack.clients:
                with contextlib.suppress(Exception):
                    await ws.close()
            await stop_gateway(server)


@pytest.fixture
async def stack(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """The whole stack; ``@pytest.mark.gateway_settings(**overrides)`` tunes the gateway."""
    marker = request.node.get_closest_marker("gateway_settings")
    overrides = marker.kwargs if marker else {}
    async with running_stack(redis_url, **overrides) as s:
        yield s
