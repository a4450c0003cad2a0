"""The server-emitted envelope (docs/protocol.md, "Envelope"), built by every publisher.

    {"id", "type", "timestamp", "sender", "room", "data", "metadata":
        {"correlation_id", "priority": "high|normal|low", "ttl", "traceparent", ...}}

Pure: no I/O; ``msgspec`` encodes it. Client messages are parsed and validated by the
gateway (``roomgate_gateway.protocol``), not here.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

Priority = Literal["high", "normal", "low"]
PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")


class Envelope(msgspec.Struct, omit_defaults=True):
    """A server-emitted message."""

    id: str
    type: str
    timestamp: str
    sender: str
    room: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


_encoder = msgspec.json.Encoder()


def utc_now_iso(now: datetime | None = None) -> str:
    """ISO 8601 UTC with millisecond precision and a ``Z`` suffix."""
    moment = now or datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def new_id() -> str:
    return str(uuid.uuid4())


def make_envelope(
    type_: str,
    *,
    sender: str,
    room: str | None = None,
    data: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Envelope:
    return Envelope(
        id=new_id(),
        type=type_,
        timestamp=utc_now_iso(now),
        sender=sender,
        room=room,
        data=data or {},
        metadata=metadata or {},
    )


def encode(envelope: Envelope) -> bytes:
    return _encoder.encode(envelope)
