"""The load generator: many picows WebSocket clients in one asyncio process.

A ``Fleet`` connects its clients (a bounded number at a time), subscribes them, and counts
what they receive into a ``DeliveryLedger``. The hot path is one dict look-up per frame:
the decoded events of a frame are cached by its bytes, since every client of a room gets
the same frames, so only the first client to see a frame pays for the JSON decoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Protocol, cast

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from roomgate_tools.bench._fanout.ledger import DeliveryLedger
from roomgate_tools.bench._fanout.wire import Decoded, Events, Kind

_TEXT = WSMsgType.TEXT
_CONTINUATION = WSMsgType.CONTINUATION
_CACHE_LIMIT = 50_000
_RETRY_DELAY = 0.25  # seconds before a refused connection or subscription is tried again
_CONNECT_TRIES = 10
_WELCOME_WAIT = 15.0  # seconds from TCP connect to the welcome
# picows's own transports (aiofastnet) or the event loop's (uvloop's, written in C).
USE_AIOFASTNET: bool | None = None  # None: picows decides (aiofastnet when installed)
HEARTBEAT_EVERY = 20.0  # seconds between a client's application pings (gateway: 30 s)


class Wire(Protocol):
    name: str
    welcome_on_connect: bool

    def path(self, client: int) -> str: ...
    def subscribe_frame(self) -> bytes | None: ...
    def heartbeat_frame(self) -> bytes | None: ...
    def reply(self, kind: Kind) -> bytes | None: ...
    def decode(self, payload: bytes) -> Decoded: ...


class FleetError(RuntimeError):
    """Clients could not connect or subscribe."""


def _fail(future: asyncio.Future[None], exc: Exception) -> None:
    """Fail ``future``; whoever awaits it sees the error, nobody gets a 'never retrieved'
    warning for the futures of abandoned connection attempts."""
    future.set_exception(exc)
    future.exception()


class _Client(WSListener):
    def __init__(self, index: int, fleet: Fleet) -> None:
        super().__init__()
        self.index = index
        self.fleet = fleet
        self.transport: WSTransport | None = None
        loop = asyncio.get_running_loop()
        self.welcomed: asyncio.Future[None] = loop.create_future()
        self.subscribed: asyncio.Future[None] = loop.create_future()
        self._partial: list[bytes] | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        wire = self.fleet.wire
        if wire.welcome_on_connect:
            self.welcomed.set_result(None)
        hello = getattr(wire, "hello_frame", None)
        if hello is not None:
            frame = hello(self.fleet.first + self.index)
            if frame is not None:
                transport.send(_TEXT, frame)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is _TEXT and frame.fin and self._partial is None:
            payload = frame.get_payload_as_bytes()
        elif kind is _TEXT or kind is _CONTINUATION:
            if kind is _TEXT:
                self._partial = []
            if self._partial is None:
                return
            self._partial.append(frame.get_payload_as_bytes())
            if not frame.fin:
                return
            payload = b"".join(self._partial)
            self._partial = None
        else:
            return  # pings are answered by picows; close frames end the connection
        fleet = self.fleet
        events = fleet.cache.get(payload)
        if events is None:
            fleet.slow_path(self, payload)
            return
        now = time.time_ns()
        record = fleet.ledger.record
        index = self.index
        for seq, sent in events:
            record(index, seq, sent, now)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.fleet.on_disconnected(self)

    def send(self, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send(_TEXT, payload)


class Fleet:
    """``clients`` WebSocket clients of one server, counted into one ledger."""

    def __init__(
        self, wire: Wire, ledger: DeliveryLedger, host: str, port: int, *, first: int = 0
    ) -> None:
        self.wire = wire
        self.first = first  # client i of this fleet is client ``first + i`` of the wire
        self.ledger = ledger
        self.host = host
        self.port = port
        self.cache: dict[bytes, Events] = {}
        self.clients: list[_Client] = []
        self.errors: dict[str, int] = {}  # error frames received, by code and message
        self.dropped = 0  # connections the server closed while we measured
        self.connect_retries = 0
        self.subscribe_retries = 0
        self._closing = False
        self._heartbeat: asyncio.Task[None] | None = None
        # Subscribe each client as soon as it is welcomed (a reconnecting client does)
        self.subscribe_on_welcome = False

    # -- hot path helpers ------------------------------------------------------------------

    def slow_path(self, client: _Client, payload: bytes) -> None:
        decoded = self.wire.decode(payload)
        kind = decoded.kind
        if kind is Kind.EVENTS:
            if len(self.cache) >= _CACHE_LIMIT:
                self.cache.clear()
            self.cache[payload] = decoded.events
            now = time.time_ns()
            for seq, sent in decoded.events:
                self.ledger.record(client.index, seq, sent, now)
        elif kind is Kind.WELCOME:
            if not client.welcomed.done():
                client.welcomed.set_result(None)
                if self.subscribe_on_welcome:
                    frame = self.wire.subscribe_frame()
                    if frame is not None:
                        client.send(frame)
        elif kind is Kind.SUBSCRIBED:
            if not client.subscribed.done():
                client.subscribed.set_result(None)
        elif kind is Kind.RETRY:
            self._error(decoded.detail)
            self.subscribe_retries += 1
            frame = self.wire.subscribe_frame()
            if frame is not None and not client.subscribed.done():
                asyncio.get_running_loop().call_later(_RETRY_DELAY, client.send, frame)
        elif kind is Kind.ERROR:
            self._error(decoded.detail)
            for future in (client.welcomed, client.subscribed):
                if not future.done():
                    _fail(future, FleetError(decoded.detail))
        reply = self.wire.reply(kind)
        if reply is not None:
            client.send(reply)

    def on_disconnected(self, client: _Client) -> None:
        if self._closing:
            return
        welcomed = client.welcomed
        if welcomed.done() and not welcomed.cancelled() and welcomed.exception() is None:
            self.dropped += 1  # a connection we measure, closed by the server
        for future in (client.welcomed, client.subscribed):
            if not future.done():
                _fail(future, FleetError("disconnected by the server"))

    def _error(self, text: str) -> None:
        self.errors[text] = self.errors.get(text, 0) + 1

    # -- phases ----------------------------------------------------------------------------

    async def connect(
        self,
        count: int,
        *,
        concurrency: int = 100,
        within: float = 60.0,
        spread: float = 0.0,
        seed: int = 0,
        tries: int | None = _CONNECT_TRIES,
    ) -> float:
        """Connect ``count`` clients, each up to its welcome; returns the seconds it took.
        ``spread``: each client first waits a random delay in [0, spread) seconds (a
        reconnect jitter), drawn from a generator seeded with ``seed``. ``tries``: attempts
        per client (None: until ``within`` ends, as a reconnecting client keeps trying)."""
        gate = asyncio.Semaphore(concurrency)
        base = f"ws://{self.host}:{self.port}"
        delays = random.Random(seed)
        waits = [delays.random() * spread for _ in range(count)] if spread > 0 else []

        async def one(index: int) -> _Client:
            if waits:
                await asyncio.sleep(waits[index])
            attempt = 0
            while tries is None or attempt < tries:
                attempt += 1
                async with gate:
                    transport: WSTransport | None = None
                    try:
                        transport, listener = await ws_connect(
                            lambda: _Client(index, self),
                            base + self.wire.path(self.first + index),
                            websocket_handshake_timeout=_WELCOME_WAIT,
                            use_aiofastnet=USE_AIOFASTNET,
                        )
                        client = cast(_Client, listener)  # what the factory above made
                        await asyncio.wait_for(client.welcomed, _WELCOME_WAIT)
                        return client
                    except Exception as exc:
                        if transport is not None:
                            transport.disconnect(graceful=False)
                        if attempt == tries:
                            raise FleetError(f"client {index} could not connect: {exc!r}") from exc
                        self._error(f"connect failed, retried: {exc!r}")
                        self.connect_retries += 1
                await asyncio.sleep(_RETRY_DELAY * min(attempt, _CONNECT_TRIES))
            raise AssertionError("unreachable")

        started = time.perf_counter()
        clients = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), within)
        elapsed = time.perf_counter() - started
        self.clients = list(clients)
        self.start_heartbeat()
        return elapsed

    async def subscribe(self, *, within: float = 60.0) -> float:
        """Subscribe every client; returns the seconds until the last is subscribed."""
        frame = self.wire.subscribe_frame()
        started = time.perf_counter()
        for client in self.clients:
            if frame is None:
                if not client.subscribed.done():
                    client.subscribed.set_result(None)
            else:
                client.send(frame)
        await asyncio.wait_for(asyncio.gather(*(c.subscribed for c in self.clients)), within)
        return time.perf_counter() - started

    def start_heartbeat(self, every: float = HEARTBEAT_EVERY) -> None:
        """Send every client's application ping once per ``every`` seconds, spread out."""
        frame = self.wire.heartbeat_frame()
        if frame is not None and self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat(frame, every))

    async def _beat(self, frame: bytes, every: float) -> None:
        slices = 20
        while True:
            for k in range(slices):
                for client in self.clients[k::slices]:
                    client.send(frame)
                await asyncio.sleep(every / slices)

    async def close(self, within: float = 5.0) -> None:
        self._closing = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        transports = [c.transport for c in self.clients if c.transport is not None]
        for transport in transports:
            if not transport.is_disconnected:
                transport.send_close(WSCloseCode.OK)
                transport.disconnect()
        waits = [t.wait_disconnected() for t in transports]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), within)
        for client in self.clients:
            for future in (client.welcomed, client.subscribed):
                if not future.done():
                    future.cancel()
                elif not future.cancelled():
                    future.exception()  # retrieved: no "never retrieved" warning
        self.clients.clear()


async def wait_delivered(ledger: DeliveryLedger, total: int, within: float) -> bool:
    """Until ``total`` deliveries are counted in the open window; False on timeout."""
    reached = asyncio.Event()
    ledger.notify_at(total, reached.set)
    try:
        await asyncio.wait_for(reached.wait(), within)
        return True
    except TimeoutError:
        return False
    finally:
        ledger.notify_at(-1, None)
