"""The HTTP fallback transport: the same protocol as ``/ws`` for clients whose WebSockets are
blocked, over a server-sent-events stream (server → client) and ``POST`` (client → server).

    GET  /sse?token=<JWT>[&compress=1]      (or ``Authorization: Bearer <JWT>``)
    POST /sse/{session_id}                  header ``X-Roomgate-Session-Secret``

No protocol logic lives here: ``SseSession`` gives the unchanged ``Connection`` the raw
ASGI-WebSocket ``send``/``receive`` callables it drives a WebSocket with. The SSE stream *is*
the connection (accept = response headers, each frame = one ``data:`` event, close = a
final ``event: close`` and the end of the response); every ``POST`` body is one inbound
frame. Token, envelope, rooms, rate and connection limits (the same cluster-wide counters),
heartbeat timeout, drain and recovery with ``since`` are therefore those of ``/ws``.

Writes go straight to the HTTP response (``send`` completes without suspending while the
socket keeps up, as ``Connection._send_now`` expects); when the socket pushes back the
connection's own bounded outbound queue takes over, exactly as for a WebSocket.

Exceptions::

    FallbackError
     └── SessionClosed   a frame sent on a stream that already ended
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from roomgate_common.bearer import bearer_token
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from roomgate_gateway.codes import CloseCode
from roomgate_gateway.connection import Connection
from roomgate_gateway.errors import GatewayError

if TYPE_CHECKING:
    from roomgate_gateway.gateway import Gateway

log = logging.getLogger(__name__)

SESSION_HEADER = "X-Roomgate-Session"
SECRET_HEADER = "X-Roomgate-Session-Secret"  # noqa: S105 (a header name)
# POSTed frames waiting for the connection's read loop; past this the POST gets 429.
MAX_PENDING_FRAMES = 64
# Keep-alive comment period: proxies (HAProxy `timeout server`/`timeout client`, 60 s in
# `roomgate dev`) must see bytes on an idle stream well before their inactivity timeout.
MAX_KEEPALIVE_SECONDS = 15.0
# EventSource's automatic reconnect delay (the `retry:` field), in milliseconds.
RETRY_MS = 3000

_CONNECT: dict[str, Any] = {"type": "websocket.connect"}
_DISCONNECT: dict[str, Any] = {"type": "websocket.disconnect", "code": 1006}


class FallbackError(GatewayError):
    """Base of the fallback transport's errors."""


class SessionClosed(FallbackError):
    """The SSE stream of this session already ended."""


def sse_event(data: str, event: str | None = None) -> bytes:
    """One SSE event. A frame is compact JSON (one line); should it hold line breaks they
    become several ``data:`` lines, which the client joins back with ``\\n``."""
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    head = f"event: {event}\n" if event else ""
    return (head + "".join(f"data: {line}\n" for line in lines) + "\n").encode()


class SseSession:
    """One fallback connection: an SSE response plus the frames POSTed to it."""

    def __init__(self, http_send: Send, keepalive: float) -> None:
        self.id = secrets.token_urlsafe(24)
        self.secret = secrets.token_urlsafe(24)
        self.connection: Connection | None = None
        self._http_send = http_send
        self._keepalive = keepalive
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._inbox.put_nowait(_CONNECT)
        self._lock = asyncio.Lock()
        self.started = False
        self.ended = False
        self._wrote_at = 0.0

    # ----------------------------------------------------------- the Connection's side
    async def receive(self) -> dict[str, Any]:
        return await self._inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            await self._write(sse_event(message.get("text") or ""))
        elif kind == "websocket.accept":
            await self._start()
        elif kind == "websocket.close":
            close = json.dumps({"code": message.get("code", 1000), "reason": message.get("reason")})
            try:
                await self._write(sse_event(close, "close"), last=True)
            finally:
                self._inbox.put_nowait(_DISCONNECT)

    # ----------------------------------------------------------------- the HTTP side
    def post(self, text: str) -> bool:
        """Queue one inbound frame; False when too many wait already."""
        if self._inbox.qsize() >= MAX_PENDING_FRAMES:
            return False
        self._inbox.put_nowait({"type": "websocket.receive", "text": text})
        return True

    def dropped(self) -> None:
        """The client went away: the connection sees a disconnect, as for a WebSocket."""
        self.ended = True
        self._inbox.put_nowait(_DISCONNECT)

    def authorized(self, secret: str) -> bool:
        return hmac.compare_digest(secret.encode(), self.secret.encode())

    async def _start(self) -> None:
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache, no-store"),
            (b"x-accel-buffering", b"no"),
            (SESSION_HEADER.lower().encode(), self.id.encode()),
        ]
        async with self._lock:
            await self._http_send(
                {"type": "http.response.start", "status": 200, "headers": headers}
            )
            self.started = True
        hello = json.dumps(
            {"session_id": self.id, "secret": self.secret, "post": f"/sse/{self.id}"}
        )
        await self._write(f"retry: {RETRY_MS}\n\n".encode() + sse_event(hello, "session"))

    async def _write(self, chunk: bytes, *, last: bool = False) -> None:
        # An uncontended asyncio.Lock is taken without suspending: the write stays eager.
        async with self._lock:
            if self.ended or not self.started:
                raise SessionClosed(self.id)
            if last:
                self.ended = True
            await self._http_send(
                {"type": "http.response.body", "body": chunk, "more_body": not last}
            )
            self._wrote_at = asyncio.get_running_loop().time()

    async def end(self) -> None:
        """Finish the response if the connection ended without a close frame."""
        async with self._lock:
            if self.started and not self.ended:
                self.ended = True
                with contextlib.suppress(Exception):
                    await self._http_send(
                        {"type": "http.response.body", "body": b"", "more_body": False}
                    )

    async def keepalive_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.ended:
            await asyncio.sleep(self._keepalive / 2)
            if self.ended or not self.started or self._lock.locked():
                continue
            if loop.time() - self._wrote_at >= self._keepalive:
                with contextlib.suppress(SessionClosed):
                    await self._write(b": keep-alive\n\n")


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return bearer_token(value.decode("latin-1")) or None
    return None


async def _wait_disconnect(receive: Receive, session: SseSession) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    session.dropped()


class Fallback:
    """The live sessions of one gateway and the two endpoints that serve them."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.sessions: dict[str, SseSession] = {}

    @property
    def keepalive(self) -> float:
        return min(MAX_KEEPALIVE_SECONDS, self.gw.limits.heartbeat_interval / 2)

    async def stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /sse``: open a session and serve it until either side ends it."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        token = (query.get("token") or [None])[0] or _bearer(scope)
        compress = (query.get("compress") or [""])[0] in ("1", "deflate", "true")
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        session = SseSession(send, self.keepalive)
        conn = Connection(self.gw, session.send, session.receive, ip, compress)
        session.connection = conn
        self.sessions[session.id] = session
        watcher = asyncio.create_task(_wait_disconnect(receive, session))
        beat = asyncio.create_task(session.keepalive_loop())
        try:
            await conn.run(token or None)
        finally:
            self.sessions.pop(session.id, None)
            beat.cancel()
            watcher.cancel()
            await session.end()

    async def post(self, request: Request) -> Response:
        """``POST /sse/{session_id}``: one client frame (a message, or a ``batch``)."""
        session = self.sessions.get(request.path_params["session_id"])
        if session is None or session.ended:
            return _error(404, "session_not_found", "no such session (it ended): open a new one")
        if not session.authorized(request.headers.get(SECRET_HEADER, "")):
            return _error(403, "forbidden", f"missing or wrong {SECRET_HEADER}")
        limit = self.gw.limits.max_message_bytes
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                self.gw.metrics.errors.labels("message_too_big").inc()
                if session.connection is not None:
                    await session.connection.close(CloseCode.MESSAGE_TOO_BIG)
                return _error(413, "message_too_big", f"body exceeds {limit} bytes")
        if not session.post(body.decode("utf-8", "replace")):
            return _error(429, "too_many_pending", "frames are not read this fast; retry", retry=1)
        return Response(status_code=202)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/sse", _Raw(self.stream), methods=["GET"]),
            Route("/sse/{session_id}", self.post, methods=["POST"]),
        ]


class _Raw:
    """A callable object: Starlette passes it the raw ASGI triple (see app._RawASGI)."""

    def __init__(self, endpoint: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.endpoint(scope, receive, send)


def _error(status: int, code: str, message: str, *, retry: int | None = None) -> Response:
    headers = {"Retry-After": str(retry)} if retry else None
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def fallback_routes(gateway: Gateway) -> list[BaseRoute]:
    """The routes ``create_app`` adds next to ``/ws``."""
    return Fallback(gateway).routes()


__all__ = [
    "Fallback",
    "FallbackError",
    "SessionClosed",
    "SseSession",
    "fallback_routes",
    "sse_event",
]
