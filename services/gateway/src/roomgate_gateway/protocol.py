"""Parsing and validating what clients send: pure functions, no I/O.

``parse_frame`` turns one text/binary frame into a typed message or raises
``ProtocolError`` carrying the documented error code. ``compressed`` frames are inflated
with a hard cap (a compression bomb costs at most ``max_inflated`` bytes of memory);
``batch`` frames yield their messages, each parsed (and failing) on its own.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Annotated, Any, Literal

import msgspec
from roomgate_common.jsondepth import MAX_JSON_DEPTH, too_deep

from roomgate_gateway.codes import ErrorCode
from roomgate_gateway.errors import GatewayError

Str128 = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
RoomName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Token = Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]

# The protocol's event types (docs/protocol.md, "Events"). Backends may publish any of
# them; clients all but the ones the gateway itself produces. roomauthz decides who may
# publish which type into which room.
GATEWAY_EVENT_TYPES = frozenset({"agent_connected", "agent_disconnected"})
CLIENT_EVENT_TYPES = frozenset(
    {
        "agent_updated",
        "agent_status",
        "task_created",
        "task_started",
        "task_progress",
        "task_completed",
        "task_failed",
        "alert_triggered",
        "alert_acknowledged",
        "alert_resolved",
        "alert_escalated",
        "package_updated",
        "service_status",
        "metrics_update",
        "inventory_refresh",
    }
)
EVENT_TYPES = CLIENT_EVENT_TYPES | GATEWAY_EVENT_TYPES


class ProtocolError(GatewayError):
    """A client message was refused; ``code`` is an ``ErrorCode``. ``ref_id`` is the
    offending message's ``id`` when it had one."""

    def __init__(self, code: ErrorCode, message: str, ref_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref_id = ref_id


class ClientMetadata(msgspec.Struct, omit_defaults=True):
    correlation_id: Str128 | None = None
    priority: Literal["high", "normal", "low"] = "normal"
    ttl: Annotated[int, msgspec.Meta(ge=0, le=7 * 86400)] | None = None
    traceparent: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    tracestate: Annotated[str, msgspec.Meta(max_length=512)] | None = None


class _Base(msgspec.Struct, kw_only=True):
    id: Str128 | None = None
    metadata: ClientMetadata | None = None
    requiresAck: bool = False


class TokenData(msgspec.Struct):
    token: Token


class Auth(_Base, tag="auth"):
    token: Token | None = None
    data: TokenData | None = None

    def credential(self) -> str | None:
        return self.token or (self.data.token if self.data else None)


class Refresh(Auth, tag="refresh"):
    pass


class PingData(msgspec.Struct):
    timestamp: int | float | Annotated[str, msgspec.Meta(max_length=64)] | None = None


class Ping(_Base, tag="ping"):
    timestamp: int | float | Annotated[str, msgspec.Meta(max_length=64)] | None = None
    data: PingData | None = None

    def echo(self) -> int | float | str | None:
        if self.timestamp is not None:
            return self.timestamp
        return self.data.timestamp if self.data is not None else None


class Since(msgspec.Struct):
    offset: Annotated[int, msgspec.Meta(ge=0)]
    epoch: Annotated[str, msgspec.Meta(max_length=64)]


class SubscribeData(msgspec.Struct):
    room: RoomName
    since: Since | None = None


class Subscribe(_Base, tag="subscribe"):
    data: SubscribeData


class RoomData(msgspec.Struct):
    room: RoomName


class Unsubscribe(_Base, tag="unsubscribe"):
    data: RoomData


class Ack(_Base, tag="ack"):
    ackId: Str128


class Event(_Base):
    """A client publish: any of CLIENT_EVENT_TYPES into ``room``."""

    type: str
    room: RoomName
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class Batch(_Base, tag="batch"):
    messages: list[msgspec.Raw]


class Compressed(_Base, tag="compressed"):
    data: Annotated[str, msgspec.Meta(min_length=1)]


ClientMessage = Auth | Refresh | Ping | Subscribe | Unsubscribe | Ack | Event | Batch | Compressed

_SCHEMAS: dict[str, type[msgspec.Struct]] = {
    "auth": Auth,
    "refresh": Refresh,
    "ping": Ping,
    "subscribe": Subscribe,
    "unsubscribe": Unsubscribe,
    "ack": Ack,
    "batch": Batch,
    "compressed": Compressed,
}


class _Head(msgspec.Struct):
    type: str | None = None
    id: Any = None


_head_decoder = msgspec.json.Decoder(_Head)
_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    name: msgspec.json.Decoder(schema) for name, schema in _SCHEMAS.items()
}
_event_decoder = msgspec.json.Decoder(Event)


def parse_message(
    raw: bytes | str, *, nested: bool = False, max_depth: int = MAX_JSON_DEPTH
) -> ClientMessage:
    """One JSON message -> its typed form. ``nested`` forbids batch/compressed (inside a batch).
    Nesting deeper than ``max_depth`` is refused before anything is decoded."""
    if too_deep(raw, max_depth):
        raise ProtocolError(ErrorCode.JSON_TOO_DEEP, f"JSON nested deeper than {max_depth}")
    try:
        head = _head_decoder.decode(raw)
    except msgspec.ValidationError as exc:  # a subclass of DecodeError: catch it first
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, _short(exc)) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(ErrorCode.MALFORMED_JSON, _short(exc)) from None
    ref_id = head.id if isinstance(head.id, str) and len(head.id) <= 128 else None
    if head.type is None:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "missing `type`", ref_id)
    if nested and head.type in ("batch", "compressed"):
        raise ProtocolError(ErrorCode.NESTING_NOT_ALLOWED, f"{head.type} inside a batch", ref_id)
    decoder = _decoders.get(head.type)
    if decoder is None:
        if head.type not in CLIENT_EVENT_TYPES:
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "unknown message type", ref_id)
        decoder = _event_decoder
    try:
        message: ClientMessage = decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, _short(exc), ref_id) from None
    return message


def inflate(encoded: str, *, max_inflated: int) -> bytes:
    """base64 of zlib (or raw deflate) bytes -> the inflated bytes, at most ``max_inflated``.

    Decompression stops as soon as the cap is passed, so a bomb never grows memory beyond it.
    """
    try:
        packed = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(ErrorCode.COMPRESSION_ERROR, "data is not base64") from None
    is_zlib = len(packed) >= 2 and packed[0] & 0x0F == 8 and (packed[0] << 8 | packed[1]) % 31 == 0
    inflater = zlib.decompressobj(zlib.MAX_WBITS if is_zlib else -zlib.MAX_WBITS)
    try:
        out = inflater.decompress(packed, max_inflated + 1)
    except zlib.error:
        raise ProtocolError(ErrorCode.COMPRESSION_ERROR, "data is not deflate/zlib") from None
    if len(out) > max_inflated:
        raise ProtocolError(
            ErrorCode.INFLATED_TOO_LARGE, f"inflated message exceeds {max_inflated} bytes"
        )
    if not inflater.eof:
        raise ProtocolError(ErrorCode.COMPRESSION_ERROR, "truncated deflate stream")
    return out


def _short(exc: Exception) -> str:
    return str(exc)[:200]
