"""A small resilient Roomgate client: what a real client does to get every room message
exactly once and in order across gateway crashes, drains and Redis outages.

    client = RoomgateClient(lb_ws_url, token, rooms=["system", "tasks"])
    await client.start()                 # connected and subscribed (or raises)
    ...
    client.ids("system")                 # message ids received, in order, no duplicates
    await client.stop()

A ``ws://…/ws`` URL speaks WebSocket; an ``http://…/sse`` URL speaks the HTTP fallback (SSE
stream + POST, docs/protocol.md "HTTP fallback"), with everything below the same.

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
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
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


# --------------------------------------------------------------------------- transports
class LinkClosed(Exception):
    """The transport ended; ``code`` is the close code (1006 when none was received)."""

    def __init__(self, code: int = CLOSE_ABNORMAL) -> None:
        super().__init__(code)
        self.code = code


class _WebSocketLink:
    """``/ws``: one text frame per message."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(
        cls, url: str, token: str, cookies: dict[str, str], open_timeout: float
    ) -> _Link:
        ws = await websockets.connect(
            f"{url}{'&' if '?' in url else '?'}token={token}",
            additional_headers=_cookie_header(cookies),
            open_timeout=open_timeout,
            max_size=None,
        )
        if ws.response is not None:
            _keep_cookies(cookies, ws.response.headers.get_all("Set-Cookie"))
        return cls(ws)

    async def recv(self) -> str:
        try:
            frame = await self.ws.recv()
        except ConnectionClosed as exc:
            raise LinkClosed(exc.rcvd.code if exc.rcvd is not None else CLOSE_ABNORMAL) from None
        return frame if isinstance(frame, str) else frame.decode()

    async def send(self, text: str) -> None:
        try:
            await self.ws.send(text)
        except ConnectionClosed as exc:
            raise LinkClosed(exc.rcvd.code if exc.rcvd is not None else CLOSE_ABNORMAL) from None

    async def close(self) -> None:
        await self.ws.close()


class _SseLink:
    """The HTTP fallback (docs/protocol.md): ``GET /sse`` streams frames, ``POST`` sends."""

    def __init__(
        self, http: httpx.AsyncClient, response: httpx.Response, cookies: dict[str, str]
    ) -> None:
        self.http = http
        self.response = response
        self.cookies = cookies
        self.session: dict[str, str] = {}
        self._events = self._read()

    @classmethod
    async def open(
        cls, url: str, token: str, cookies: dict[str, str], open_timeout: float
    ) -> _Link:
        http = httpx.AsyncClient(timeout=httpx.Timeout(open_timeout, read=None))
        try:
            request = http.build_request(
                "GET", url, params={"token": token}, headers=_cookie_header(cookies)
            )
            response = await http.send(request, stream=True)
        except BaseException:
            await http.aclose()
            raise
        link = cls(http, response, cookies)
        try:
            if response.status_code != 200:
                raise LinkClosed(CLOSE_ABNORMAL)
            _keep_cookies(cookies, response.headers.get_list("set-cookie"))
            event, data = await link._next()
            if event != "session":
                raise LinkClosed(CLOSE_ABNORMAL)
            link.session = json.loads(data)
        except BaseException:
            await link.close()
            raise
        return link

    async def _read(self) -> AsyncIterator[tuple[str, str]]:
        event, data = "message", list[str]()
        async for line in self.response.aiter_lines():
            if line == "":
                if data:
                    yield event, "\n".join(data)
                event, data = "message", []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[6:] if line.startswith("data: ") else line[5:])

    async def _next(self) -> tuple[str, str]:
        try:
            return await anext(self._events)
        except (StopAsyncIteration, httpx.HTTPError):
            raise LinkClosed(CLOSE_ABNORMAL) from None

    async def recv(self) -> str:
        while True:
            event, data = await self._next()
            if event == "message":
                return data
            if event == "close":
                raise LinkClosed(int(json.loads(data).get("code", CLOSE_ABNORMAL)))

    async def send(self, text: str) -> None:
        base = self.response.request.url
        try:
            response = await self.http.post(
                base.join(self.session["post"]),
                content=text.encode(),
                headers={
                    "Content-Type": "application/json",
                    "X-Roomgate-Session-Secret": self.session["secret"],
                    **_cookie_header(self.cookies),
                },
            )
        except httpx.HTTPError:
            raise LinkClosed(CLOSE_ABNORMAL) from None
        if response.status_code != 202:
            raise LinkClosed(CLOSE_ABNORMAL)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.response.aclose()
        with contextlib.suppress(Exception):
            await self._events.aclose()  # type: ignore[attr-defined]
        await self.http.aclose()


_Link = _WebSocketLink | _SseLink


def _cookie_header(cookies: dict[str, str]) -> dict[str, str]:
    if not cookies:
        return {}
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}


def _keep_cookies(cookies: dict[str, str], set_cookie: Iterable[str]) -> None:
    for header in set_cookie:
        pair = header.split(";", 1)[0]
        if "=" in pair:
            name, value = pair.split("=", 1)
            cookies[name.strip()] = value.strip()


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
        self._link: _Link | None = None
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
        if self._link is not None:
            with contextlib.suppress(Exception):
                await self._link.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def subscribe(self, room: str) -> None:
        self._wanted.add(room)
        self.rooms.setdefault(room, RoomState())
        if self._link is not None:
            with contextlib.suppress(LinkClosed):
                await self._subscribe(self._link, room)

    @property
    def connected(self) -> bool:
        return self._link is not None

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
        opener = _SseLink.open if self.url.startswith("http") else _WebSocketLink.open
        while not self._stopping:
            hint: float | None = None
            code = CLOSE_ABNORMAL
            try:
                link = await opener(self.url, self._token_now(), self.cookies, self.open_timeout)
            except (OSError, TimeoutError, InvalidHandshake, httpx.HTTPError, LinkClosed):
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
                continue
            before = self.connects
            try:
                hint = await self._session(link)
            except LinkClosed as exc:
                code = exc.code
                hint = getattr(exc, "hint", None)
            finally:
                if self.connects > before:  # it got as far as `welcome`: back off from scratch
                    attempt = 0
                self._link = None
                for state in self.rooms.values():
                    state.subscribed = False
                    state.resyncing = False
                with contextlib.suppress(Exception):
                    await link.close()
            self.closes.append(code)
            if self._stopping:
                return
            if code == CLOSE_UNAUTHORIZED and not callable(self._token):
                self.fatal = Unauthorized(f"{self.name}: closed 4001")
                return
            await asyncio.sleep(hint if hint is not None else self._backoff(attempt))
            attempt += 1

    async def _session(self, link: _Link) -> float | None:
        """One connection, from `welcome` to its end; returns a `reconnect` hint delay."""
        hint: float | None = None
        welcome = json.loads(await link.recv())
        if welcome.get("type") != "welcome":
            self._note(welcome)
            await link.recv()  # the close that follows an error raises LinkClosed
            return None
        self.connects += 1
        self.gateways.append(str(welcome["data"].get("gateway")))
        self._link = link
        beat = float(welcome["data"]["heartbeat_interval"])
        pinger = asyncio.create_task(self._ping(link, beat))
        try:
            for room in sorted(self._wanted):
                await self._subscribe(link, room)
            while True:
                try:
                    frame = json.loads(await link.recv())
                except LinkClosed as exc:
                    exc.hint = hint  # type: ignore[attr-defined]
                    raise
                for msg in _unpack(frame):
                    if msg.get("type") == "reconnect":
                        hint = float(msg.get("data", {}).get("delay_ms", 0)) / 1000
                    else:
                        await self._on_message(link, msg)
        finally:
            pinger.cancel()

    async def _ping(self, link: _Link, interval: float) -> None:
        with contextlib.suppress(LinkClosed):
            while True:
                await asyncio.sleep(interval)
                await link.send(json.dumps({"type": "ping", "timestamp": time.time()}))

    async def _subscribe(self, link: _Link, room: str) -> None:
        state = self.rooms[room]
        data: dict[str, Any] = {"room": room}
        if state.offset is not None and state.epoch:
            data["since"] = {"offset": state.offset, "epoch": state.epoch}
        await link.send(json.dumps({"type": "subscribe", "data": data}))

    # ------------------------------------------------------------------ messages
    def _note(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "error":
            self.errors.append(msg.get("data", {}))

    async def _on_message(self, link: _Link, msg: dict[str, Any]) -> None:
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
            await link.send(json.dumps({"type": "unsubscribe", "data": {"room": room}}))
            await self._subscribe(link, room)
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
