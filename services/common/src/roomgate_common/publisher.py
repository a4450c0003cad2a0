"""Publish an event into a room through Redis, so every gateway serving the room delivers it.

This is the only place that writes to room channels: backends (through this class, the HTTP
and gRPC publish APIs of the gateway) and services (escalation) all come through here.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from roomgate_common import keys
from roomgate_common.envelope import Envelope, Priority, encode, make_envelope
from roomgate_common.redis_adapter import Redis, translate_errors
from roomgate_common.telemetry import inject_trace

tracer = trace.get_tracer("roomgate.publisher")


class Publisher:
    def __init__(self, redis: Redis, *, sender: str) -> None:
        self._redis = redis
        self._sender = sender

    async def publish(
        self,
        room: str,
        type_: str,
        data: dict[str, Any] | None = None,
        *,
        priority: Priority = "normal",
        ttl: int | None = None,
        correlation_id: str | None = None,
        requires_ack: bool = False,
        sender: str | None = None,
    ) -> Envelope:
        """Publish and return the envelope as sent. Raises ``BusUnavailable`` when Redis is down."""
        metadata: dict[str, Any] = {"priority": priority}
        if ttl:
            metadata["ttl"] = ttl
        if correlation_id:
            metadata["correlation_id"] = correlation_id
        if requires_ack:
            metadata["requiresAck"] = True
        with tracer.start_as_current_span("publish", attributes={"roomgate.room": room}):
            inject_trace(metadata)
            envelope = make_envelope(
                type_, sender=sender or self._sender, room=room, data=data, metadata=metadata
            )
            async with translate_errors("publish"):
                await self._redis.publish(keys.room_channel(room), encode(envelope))
        return envelope
