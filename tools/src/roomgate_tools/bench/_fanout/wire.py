"""The four wire protocols the fan-out load generator speaks, as pure decoders.

Each ``*Wire`` says where a client connects, what it sends to subscribe, and turns one
received text frame into a ``Decoded``: its kind and, for events, the ``(seq, sent_ns)``
pairs the benchmark publisher put in the event data (``{"t": time_ns, "seq": n}``).

- ``RoomgateWire``: the gateway protocol (docs/protocol.md): ``welcome`` on connect,
  ``subscribe`` -> ``subscribed``, events as envelopes or inside ``batch`` frames.
- ``PlainWire``: the naive Starlette baseline: every frame is an envelope, no handshake.
- ``SocketIOWire``: Engine.IO 4 / Socket.IO 5 over a WebSocket: open packet ``0{...}``,
  namespace connect ``40`` -> ``40{...}``, subscribe as an event with an ack
  (``421["subscribe","system"]`` -> ``431[...]``), pings ``2`` answered with ``3``,
  events ``42["metrics_update",{...}]``.
- ``CentrifugoWire``: Centrifugo's JSON client protocol: a ``connect`` command with the JWT
  first, ``subscribe`` -> its reply, publications as ``push`` messages (newline-joined when
  several are pending), ``{}`` pings answered with ``{}``.

A wire with a ``hello_frame`` sends it as soon as the WebSocket is open (Centrifugo's
connect command); the others wait for the server.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, NamedTuple

import msgspec

Events = tuple[tuple[int, int], ...]

_decode = msgspec.json.decode


class Kind(Enum):
    EVENTS = "events"
    WELCOME = "welcome"
    SUBSCRIBED = "subscribed"
    OPEN = "open"  # Socket.IO: the Engine.IO open packet; the client answers `reply`
    PING = "ping"  # Socket.IO: an Engine.IO ping; the client answers `reply`
    RETRY = "retry"  # the subscription failed for now: send it again later
    ERROR = "error"
    OTHER = "other"


class Decoded(NamedTuple):
    kind: Kind
    events: Events = ()
    detail: str = ""


def _event_of(data: Any) -> tuple[int, int] | None:
    """``(seq, t)`` of a benchmark event's data, or None for anything else."""
    if isinstance(data, dict):
        seq, sent = data.get("seq"), data.get("t")
        if isinstance(seq, int) and isinstance(sent, int):
            return seq, sent
    return None


def _envelope_events(envelopes: list[Any]) -> Events:
    found = []
    for envelope in envelopes:
        if isinstance(envelope, dict):
            event = _event_of(envelope.get("data"))
            if event is not None:
                found.append(event)
    return tuple(found)


class RoomgateWire:
    name = "roomgate"
    welcome_on_connect = False
    room = "system"
    # Errors the protocol says to retry (a peer of the gateway is briefly unavailable).
    retry_codes = frozenset({"unavailable"})

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens

    def path(self, client: int) -> str:
        return f"/ws?token={self.tokens[client]}"

    def subscribe_frame(self) -> bytes | None:
        return msgspec.json.encode({"type": "subscribe", "data": {"room": self.room}})

    def heartbeat_frame(self) -> bytes | None:
        """The gateway closes a client silent for ``heartbeat_timeout`` (75 s by default)."""
        return b'{"type":"ping"}'

    def reply(self, kind: Kind) -> bytes | None:
        return None

    def decode(self, payload: bytes) -> Decoded:
        try:
            message = _decode(payload)
        except msgspec.DecodeError:
            return Decoded(Kind.OTHER, detail=payload[:200].decode(errors="replace"))
        if not isinstance(message, dict):
            return Decoded(Kind.OTHER)
        type_ = message.get("type")
        if type_ == "batch":
            messages = message.get("messages")
            return Decoded(
                Kind.EVENTS, _envelope_events(messages if isinstance(messages, list) else [])
            )
        if type_ == "welcome":
            return Decoded(Kind.WELCOME)
        if type_ == "subscribed":
            # Personal rooms (user-N, session-N) are confirmed too: only ours counts.
            if message.get("room") == self.room:
                return Decoded(Kind.SUBSCRIBED)
            return Decoded(Kind.OTHER, detail="subscribed elsewhere")
        if type_ == "error":
            data = message.get("data")
            data = data if isinstance(data, dict) else {}
            detail = f"{data.get('code')}: {data.get('message')}"
            if data.get("code") in self.retry_codes:
                return Decoded(Kind.RETRY, detail=detail)
            return Decoded(Kind.ERROR, detail=detail)
        event = _event_of(message.get("data"))
        if event is not None:
            return Decoded(Kind.EVENTS, (event,))
        return Decoded(Kind.OTHER, detail=str(type_))


class RoomgateSinceWire(RoomgateWire):
    """A reconnecting gateway client: subscribes with the position it had reached
    (``since``), so the gateway replays what it missed (docs/protocol.md, "Recovery")."""

    name = "roomgate-since"

    def __init__(self, tokens: list[str], offset: int, epoch: str) -> None:
        super().__init__(tokens)
        self._frame = msgspec.json.encode(
            {
                "type": "subscribe",
                "data": {"room": self.room, "since": {"offset": offset, "epoch": epoch}},
            }
        )
        self.not_recovered = 0  # `subscribed` answers with recovered: false

    def subscribe_frame(self) -> bytes | None:
        return self._frame

    def decode(self, payload: bytes) -> Decoded:
        decoded = super().decode(payload)
        if decoded.kind is Kind.SUBSCRIBED and b'"recovered":true' not in payload:
            self.not_recovered += 1
        return decoded


class PlainWire:
    name = "plain"
    welcome_on_connect = True

    def path(self, client: int) -> str:
        return "/ws"

    def subscribe_frame(self) -> bytes | None:
        return None

    def heartbeat_frame(self) -> bytes | None:
        return None

    def reply(self, kind: Kind) -> bytes | None:
        return None

    def decode(self, payload: bytes) -> Decoded:
        try:
            message = _decode(payload)
        except msgspec.DecodeError:
            return Decoded(Kind.OTHER, detail=payload[:200].decode(errors="replace"))
        event = _event_of(message.get("data")) if isinstance(message, dict) else None
        if event is None:
            return Decoded(Kind.OTHER)
        return Decoded(Kind.EVENTS, (event,))


class SocketIOWire:
    name = "socketio"
    welcome_on_connect = False
    room = "system"
    _ACK_ID = 1

    def path(self, client: int) -> str:
        return "/socket.io/?EIO=4&transport=websocket"

    def subscribe_frame(self) -> bytes | None:
        return b"42%d" % self._ACK_ID + msgspec.json.encode(["subscribe", self.room])

    def heartbeat_frame(self) -> bytes | None:
        return None  # the server pings (``2``) and the client answers (``3``)

    def reply(self, kind: Kind) -> bytes | None:
        if kind is Kind.OPEN:
            return b"40"  # connect to the default namespace
        if kind is Kind.PING:
            return b"3"
        return None

    def decode(self, payload: bytes) -> Decoded:
        if payload.startswith(b"42"):
            try:
                message = _decode(payload[2:])
            except msgspec.DecodeError:
                return Decoded(Kind.OTHER)
            if isinstance(message, list) and len(message) >= 2:
                event = _event_of(message[1])
                if event is not None:
                    return Decoded(Kind.EVENTS, (event,))
            return Decoded(Kind.OTHER)
        if payload == b"2":
            return Decoded(Kind.PING)
        if payload.startswith(b"0"):
            return Decoded(Kind.OPEN)
        if payload.startswith(b"40"):
            return Decoded(Kind.WELCOME)
        if payload.startswith(b"43%d" % self._ACK_ID):
            return Decoded(Kind.SUBSCRIBED)
        if payload.startswith((b"44", b"41", b"1")):
            return Decoded(Kind.ERROR, detail=payload[:300].decode(errors="replace"))
        return Decoded(Kind.OTHER, detail=payload[:100].decode(errors="replace"))


class CentrifugoWire:
    """Centrifugo's JSON protocol (client protocol v2, as centrifuge-js speaks it): the client
    sends ``{"id":1,"connect":{"token":...}}`` first, the reply is the welcome; subscribe is
    ``{"id":2,"subscribe":{"channel":...}}``; publications arrive as
    ``{"push":{"channel":...,"pub":{"data":...}}}``, several in one frame separated by
    newlines when Centrifugo has more than one pending for the client; the server's ping is
    ``{}`` and the client answers ``{}``."""

    name = "centrifugo"
    welcome_on_connect = False
    room = "system"
    _CONNECT_ID = 1
    _SUBSCRIBE_ID = 2

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens

    def path(self, client: int) -> str:
        return "/connection/websocket"

    def hello_frame(self, client: int) -> bytes | None:
        return msgspec.json.encode(
            {"id": self._CONNECT_ID, "connect": {"token": self.tokens[client], "name": "bench"}}
        )

    def subscribe_frame(self) -> bytes | None:
        return msgspec.json.encode({"id": self._SUBSCRIBE_ID, "subscribe": {"channel": self.room}})

    def heartbeat_frame(self) -> bytes | None:
        return None  # the server pings (``{}``) and the client answers (``{}``)

    def reply(self, kind: Kind) -> bytes | None:
        return b"{}" if kind is Kind.PING else None

    def decode(self, payload: bytes) -> Decoded:
        events: list[tuple[int, int]] = []
        kind = Kind.OTHER
        detail = ""
        for line in payload.split(b"\n"):
            if not line:
                continue
            try:
                message = _decode(line)
            except msgspec.DecodeError:
                return Decoded(Kind.OTHER, detail=payload[:200].decode(errors="replace"))
            if not isinstance(message, dict):
                continue
            if not message:
                kind = Kind.PING
                continue
            push = message.get("push")
            if isinstance(push, dict):
                pub = push.get("pub")
                event = _event_of(pub.get("data")) if isinstance(pub, dict) else None
                if event is not None:
                    events.append(event)
                continue
            error = message.get("error")
            if isinstance(error, dict):
                return Decoded(Kind.ERROR, detail=f"{error.get('code')}: {error.get('message')}")
            if message.get("id") == self._CONNECT_ID and "connect" in message:
                kind = Kind.WELCOME
            elif message.get("id") == self._SUBSCRIBE_ID and "subscribe" in message:
                kind = Kind.SUBSCRIBED
        if events:
            return Decoded(Kind.EVENTS, tuple(events))
        return Decoded(kind, detail=detail)
