"""The gateway's WebSocket protocol for uvicorn: uvicorn's sans-I/O implementation (the
websockets library's parser and handshake), made lighter per connection and given a direct
path for fan-out frames.

- **Direct frames.** A server frame is not masked, so one message's frame is the same bytes
  for every client: fan-out builds it once (``text_frame``) and writes it to each
  transport, instead of running ASGI ``send`` → ``send_text`` → ``Frame.serialize`` per
  client. The connection finds this protocol in ``scope["extensions"]["roomgate.direct"]``
  and writes only while the transport takes data (``writable_now``); otherwise it queues
  and waits on ``writable``, as ASGI ``send`` would. Only complete, uncompressed text
  frames go this way (permessage-deflate is off in the gateway), so the websockets state
  machine, which only sees control frames and the close handshake, stays exact.
- **Pongs are liveness.** A pong to the gateway's own ping refreshes the connection's
  ``last_seen`` (``liveness``), as a data frame does: a browser answers pings even when it
  throttles a hidden tab's timers (and with them its ``ping`` messages) to one a minute. A
  peer that answers no ping in time is closed 4008 ``Heartbeat timeout``, as the sweeper
  closes one that sends nothing.
- **Smaller connections.** uvicorn keeps an ``asyncio.Queue`` (three deques and an Event),
  an ``asyncio.Event`` and the handshake's request and response objects for the life of
  every connection; here the inbox is a list with one waiter, ``writable`` a flag with one
  waiter, and the handshake objects are dropped once the upgrade is answered.

Pinned to uvicorn's ``WebSocketsSansIOProtocol`` (uv.lock); the gateway's whole test suite
runs through this class.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from roomgate_gateway.codes import CloseCode
from roomgate_gateway.framing import text_frame

__all__ = ["DIRECT_EXTENSION", "GatewayWebSocketProtocol", "text_frame"]

DIRECT_EXTENSION = "roomgate.direct"


class _Inbox:
    """What ``asyncio.Queue`` does for uvicorn here (``put_nowait``, ``get``, ``empty``),
    for one consumer, in a list and at most one future."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class _Flag:
    """``asyncio.Event``'s ``set``/``clear``/``is_set``/``wait`` with one list of waiters
    created only while someone waits."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        await waiter
        return True


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    # uvicorn's attributes, as slots: with more than 30 of them CPython gives every
    # instance a full dict (~1.5 KiB); slots cost 8 bytes each. A new attribute of a later
    # uvicorn still works (it lands in the instance dict).
    __slots__ = (
        "app",
        "app_state",
        "asgi_version",
        "client",
        "close_sent",
        "close_timeout",
        "close_timer",
        "config",
        "conn",
        "connections",
        "curr_msg_data_type",
        "default_headers",
        "disconnected",
        "frames",
        "handshake_complete",
        "handshake_initiated",
        "initial_response",
        "last_ping_rtt",
        "liveness",
        "logger",
        "loop",
        "pending_ping_payload",
        "ping_interval",
        "ping_sent_at",
        "ping_timeout",
        "ping_timer",
        "pong_timer",
        "queue",
        "read_paused",
        "request",
        "response",
        "root_path",
        "scheme",
        "scope",
        "server",
        "tasks",
        "transport",
        "writable",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]
        # What has a ``last_seen`` to refresh on a pong (the connection, set by it)
        self.liveness: Any = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # an upgrade (a refused handshake has no scope)
            scope["extensions"][DIRECT_EXTENSION] = self

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # The upgrade is answered: nothing reads the handshake again. websockets' parser
            # keeps the request for the connection's life (a local of its generator), so
            # it is emptied rather than just dropped from here.
            self.request.headers.clear()
            self.request.path = ""  # it holds the query string, maybe a token
            self.request = None  # type: ignore[assignment]
            self.response = None  # type: ignore[assignment]

    def handle_pong(self, event: Any) -> None:
        answered = (
            self.pending_ping_payload is not None and bytes(event.data) == self.pending_ping_payload
        )
        super().handle_pong(event)
        if answered and self.liveness is not None:
            self.liveness.heard(time.monotonic())

    def keepalive_timeout(self) -> None:
        # uvicorn's, with the close code of the heartbeat timeout instead of 1011.
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.transport.is_closing():
            return
        self.conn.fail(CloseCode.HEARTBEAT_TIMEOUT, "Heartbeat timeout")
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()

    def writable_now(self) -> bool:
        """May a frame be written straight away (open, not closing, transport not full)?"""
        return self.writable._set and self.can_write()  # type: ignore[attr-defined]

    def can_write(self) -> bool:
        """Is the connection still open for frames (full transport or not)?"""
        return not self.close_sent and not self.disconnected and not self.transport.is_closing()
