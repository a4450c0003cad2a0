"""A small resilient Roomgate client: what a real client does to get every room message
exactly once and in order across gateway crashes, drains and Redis outages.

    client = RoomgateClient(lb_ws_url, token, rooms=["system", "tasks"])
    await client.start()                 # connected and subscribed (or raises)
    ...
    client.ids("system")                 # message ids received, in order, no duplicates
    await client.stop()

What it does (docs/protocol.md, "Delivery, ordering and recovery"):

* connects through the load balancer and keeps its cookies (``roomgate-affinity``), so a
  reconnect lands on the same gateway while it lives and elsewhere when it does not;
* reconnects after any loss with exponential backoff and full jitter, or after the
  ``delay_ms`` of a ``reconnect`` hint (drain); a close 4001 ends it unless ``token`` is a
  callable that can mint a new one;
* resubscribes every room with ``since {offset, epoch}`` of the last message it saw there;
* notices a gap in a room's offsets (a message lost live, e.g. while a gateway's Redis
  subscriber reconnected) and recovers it: ``unsubscribe`` + ``subscribe`` with ``since``;
* drops duplicates by ``id`` (recovered messages are delivered at least once);
* records what it could not recover (``recovered: false`` and ``missed``) per room;
* sends ``ping`` every ``heartbeat_interval`` of the ``welcome``.

Exceptions::

    ClientError
     ├── Unauthorized     the gateway closed 4001 and there is no way to a new token
     └── NotReady         ``start``/``wait_for`` did not get there in time
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake

CLOSE_UNAUTHORIZED = 4001
CLOSE_ABNORMAL = 1006


class ClientError(Exception):
    """Base of the client's errors."""


class Unauthorized(ClientError):
    """Closed 4001: the token is invalid or expired and no new one can be had."""


class NotReady(ClientError):
    """The client did not reach the awaited state in time."""


@dataclass
class RoomState:
    """What the client knows about one room."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    offset: int | None = None
    epoch: str | None = None
    subscribed: bool = False
    # True from a detected gap until the answer to the recovering subscribe.
    resyncing: bool = False
    # `subscribed` answers to a `since` (recovered, replayed or missed), in order.
    recoveries: list[dict[str, Any]] = field(default_factory=list)
    # Recoveries that failed: (epoch, missed or None when unknown).
    lost: list[tuple[str, int | None]] = field(default_factory=list)


class RoomgateClient:
    def __init__(
        self,
        url: str,
        token: str | Callable[[], str],
        rooms: Iterable[str] = (),
        *,
        backoff_min: float = 0.1,
        backoff_max: float = 5.0,
        open_timeout: float = 5.0,
        rng: random.Random | None = None,
        name: str = "client",
    ) -> None:
        self.url = url
        self._token = token
        self.name = name
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.open_timeout = open_timeout
        self._rng = rng or random.Random()
        self.rooms: dict[str, RoomState] = {room: RoomState() for room in rooms}
        self._wanted = set(self.rooms)
        self.cookies: dict[str, str] = {}
        self.seen: set[str] = set()
        self.duplicates = 0
        self.connects = 0
        self.gateways: list[str] = []  # the gateway of each session, from `welcome`
        self.closes: list[int] = []
        self.errors: list[dict[str, Any]] = []
        self.fatal: BaseException | None = None
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # ------------------------------------------------------------------ public API
    async def start(self, within: float = 10.0) -> RoomgateClient:
        """Run in the background (again after ``stop``, with what it knows); return once
        every room is subscribed."""
        self._stopping = False
        self.fatal = None
        self._task = asyncio.create_task(self._run(), name=f"roomgate-{self.name}")
        await self.wait_for(lambda: self.connected and self.all_subscribed, within)
        return self

    async def stop(self) -> None:
        self._stopping = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def subscribe(self, room: str) -> None:
        self._wanted.add(room)
        self.rooms.setdefault(room, RoomState())
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._subscribe(self._ws, room)

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def all_subscribed(self) -> bool:
        return all(self.rooms[r].subscribed for r in self._wanted)

    def messages(self, room: str) -> list[dict[str, Any]]:
        return self.rooms[room].messages if room in self.rooms else []

    def ids(self, room: str) -> list[str]:
        return [m["id"] for m in self.messages(room)]

    def offsets(self, room: str) -> list[int]:
        return [int(m["metadata"]["offset"]) for m in self.messages(room)]

    async def wait_for(self, predicate: Callable[[], bool], within: float) -> None:
        """Wait until ``predicate()`` holds; raise the fatal error or ``NotReady``."""
        deadline = time.monotonic() + within
        while not predicate():
            if self.fatal is not None:
                raise self.fatal
            if time.monotonic() > deadline:
                raise NotReady(f"{self.name}: not there after {within}s")
            await asyncio.sleep(0.02)

    # ------------------------------------------------------------------ connection loop
    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, min * 2^attempt)], at least ``backoff_min``/2."""
        cap = min(self.backoff_max, self.backoff_min * 2**attempt)
        return max(self.backoff_min / 2, self._rng.uniform(0, cap))

    def _token_now(self) -> str:
        return self._token() if callable(self._token) else self._token

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not look like a quiet client
            self.fatal = exc
            raise

    async def _loop(self) -> None:
        attempt = 0
        while not self._stopping:
            hint: float | None = None
            code = CLOSE_ABNORMAL
            try:
                ws = await websockets.connect(
                    f"{self.url}{'&' if '?' in self.url else '?'}token={self._token_now()}",
                    additional_headers=self._cookie_header(),
                    open_timeout=self.open_timeout,
                    max_size=None,
                )
            except (OSError, TimeoutError, InvalidHandshake):
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
                continue
            self._keep_cookies(ws)
            before = self.connects
            try:
                hint = await self._session(ws)
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else CLOSE_ABNORMAL
                hint = getattr(exc, "hint", None)
            finally:
                if self.connects > before:  # it got as far as `welcome`: back off from scratch
                    attempt = 0
                self._ws = None
                for state in self.rooms.values():
                    state.subscribed = False
                    state.resyncing = False
                with contextlib.suppress(Exception):
                    await ws.close()
            self.closes.append(code)
            if self._stopping:
                return
            if code == CLOSE_UNAUTHORIZED and not callable(self._token):
                self.fatal = Unauthorized(f"{self.name}: closed 4001")
                return
            await asyncio.sleep(hint if hint is not None else self._backoff(attempt))
            attempt += 1

    def _cookie_header(self) -> dict[str, str]:
        if not self.cookies:
            return {}
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}

    def _keep_cookies(self, ws: ClientConnection) -> None:
        response = ws.response
        if response is None:
            return
        for header in response.headers.get_all("Set-Cookie"):
            pair = header.split(";", 1)[0]
            if "=" in pair:
                name, value = pair.split("=", 1)
                self.cookies[name.strip()] = value.strip()

    async def _session(self, ws: ClientConnection) -> float | None:
        """One connection, from `welcome` to its end; returns a `reconnect` hint delay."""
        hint: float | None = None
        welcome = json.loads(await ws.recv())
        if welcome.get("type") != "welcome":
            self._note(welcome)
            await ws.recv()  # the close that follows an error raises ConnectionClosed
            return None
        self.connects += 1
        self.gateways.append(str(welcome["data"].get("gateway")))
        self._ws = ws
        pinger = asyncio.create_task(self._ping(ws, float(welcome["data"]["heartbeat_interval"])))
        try:
            for room in sorted(self._wanted):
                await self._subscribe(ws, room)
            while True:
                try:
                    frame = json.loads(await ws.recv())
                except ConnectionClosed as exc:
                    exc.hint = hint  # type: ignore[attr-defined]
                    raise
                for msg in _unpack(frame):
                    if msg.get("type") == "reconnect":
                        hint = float(msg.get("data", {}).get("delay_ms", 0)) / 1000
                    else:
                        await self._on_message(ws, msg)
        finally:
            pinger.cancel()

    async def _ping(self, ws: ClientConnection, interval: float) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(interval)
                await ws.send(json.dumps({"type": "ping", "timestamp": time.time()}))

    async def _subscribe(self, ws: ClientConnection, room: str) -> None:
        state = self.rooms[room]
        data: dict[str, Any] = {"room": room}
        if state.offset is not None and state.epoch:
            data["since"] = {"offset": state.offset, "epoch": state.epoch}
        await ws.send(json.dumps({"type": "subscribe", "data": data}))

    # ------------------------------------------------------------------ messages
    def _note(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "error":
            self.errors.append(msg.get("data", {}))

    async def _on_message(self, ws: ClientConnection, msg: dict[str, Any]) -> None:
        type_ = msg.get("type")
        data = msg.get("data") or {}
        if type_ == "subscribed":
            self._on_subscribed(data)
            return
        if type_ in ("error", "pong", "unsubscribed", "ack", "token_expiring", "welcome"):
            self._note(msg)
            return
        room = msg.get("room")
        if room is None or room not in self.rooms:
            return
        state = self.rooms[room]
        if state.resyncing:
            return  # the recovering subscribe replays it
        meta = msg.get("metadata") or {}
        offset, epoch = meta.get("offset"), meta.get("epoch")
        if msg.get("id") in self.seen:
            self.duplicates += 1
            return
        if (
            offset is not None
            and state.offset is not None
            and epoch == state.epoch
            and int(offset) > state.offset + 1
        ):
            # A gap: something was lost live. Recover from the last offset seen.
            state.resyncing = True
            state.subscribed = False
            await ws.send(json.dumps({"type": "unsubscribe", "data": {"room": room}}))
            await self._subscribe(ws, room)
            return
        self.seen.add(msg["id"])
        state.messages.append(msg)
        if offset is not None:
            if epoch != state.epoch or state.offset is None or int(offset) > state.offset:
                state.offset = int(offset)
            state.epoch = epoch

    def _on_subscribed(self, data: dict[str, Any]) -> None:
        room = data.get("room")
        if room not in self.rooms:
            return
        state = self.rooms[room]
        state.subscribed = True
        state.resyncing = False
        if "recovered" not in data:
            return
        state.recoveries.append(data)
        if not data["recovered"]:
            state.lost.append((str(data.get("epoch", "")), data.get("missed")))
            # Offsets from before cannot be trusted: start over from what comes next.
            state.offset = None
            state.epoch = data.get("epoch") or None


def _unpack(frame: dict[str, Any]) -> list[dict[str, Any]]:
    if frame.get("type") == "batch":
        return [m for item in frame.get("messages", []) for m in _unpack(item)]
    if frame.get("type") == "compressed":
        raw = zlib.decompress(base64.b64decode(frame["data"]))
        return _unpack(json.loads(raw))
    return [frame]


__all__ = ["ClientError", "NotReady", "RoomState", "RoomgateClient", "Unauthorized"]
