"""Publish an event into a room through Redis, so every gateway serving the room delivers it.

This is the only place that writes to rooms: backends (through this class or the gateway's
HTTP and gRPC publish APIs) and services (escalation) all come through here.

One Lua script makes a publish atomic: it gives the message the room's next position
(offset), appends it to the room's history stream (id ``<offset>-1``, bounded) and
publishes ``b"<offset> <epoch> <envelope JSON>"`` on the room's channel (``SPUBLISH`` in a
Redis Cluster: the channel shares the ``{room}`` hash tag with the room's keys). The room's epoch is
created on first use and changes only when the room's metadata is lost, which tells a
recovering client that offsets from before cannot be trusted.
"""

from __future__ import annotations

import secrets
from typing import Any

from opentelemetry import trace

from roomgate_common import keys
from roomgate_common.envelope import Envelope, Priority, encode, make_envelope
from roomgate_common.redis_adapter import Redis, is_cluster, translate_errors
from roomgate_common.telemetry import inject_trace

_tracer = trace.get_tracer("roomgate.publisher")

DEFAULT_HISTORY_MAXLEN = 1000

PUBLISH_SCRIPT = """
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[3]
  redis.call('HSET', KEYS[2], 'epoch', epoch)
end
local offset = redis.call('HINCRBY', KEYS[2], 'offset', 1)
if tonumber(ARGV[2]) > 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], offset .. '-1', 'm', ARGV[1])
end
redis.call(ARGV[5], ARGV[4], offset .. ' ' .. epoch .. ' ' .. ARGV[1])
return {offset, epoch}
"""


class Published(Envelope, kw_only=True):
    """The envelope as sent, with the room position it was given."""

    offset: int = 0
    epoch: str = ""


def split_bus_message(raw: bytes) -> tuple[int, str, bytes]:
    """``b"<offset> <epoch> <json>"`` -> (offset, epoch, json)."""
    offset, epoch, payload = raw.split(b" ", 2)
    return int(offset), epoch.decode(), payload


class Publisher:
    def __init__(
        self,
        redis: Redis,
        *,
        sender: str,
        history_maxlen: int = DEFAULT_HISTORY_MAXLEN,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._tracer = tracer or _tracer
        self._redis = redis
        self._sender = sender
        self._history_maxlen = history_maxlen
        self._script = redis.register_script(PUBLISH_SCRIPT)
        # Sharded pub/sub in a cluster: the channel lives on the shard of the room's keys.
        self._publish_command = "SPUBLISH" if is_cluster(redis) else "PUBLISH"

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
    ) -> Published:
        """Publish and return what was sent. Raises ``BusUnavailable`` when Redis is down:
        a publish either lands in history and on the channel or fails loudly."""
        metadata: dict[str, Any] = {"priority": priority}
        if ttl:
            metadata["ttl"] = ttl
        if correlation_id:
            metadata["correlation_id"] = correlation_id
        if requires_ack:
            metadata["requiresAck"] = True
        with self._tracer.start_as_current_span("publish", attributes={"roomgate.room": room}):
            inject_trace(metadata)
            envelope = make_envelope(
                type_, sender=sender or self._sender, room=room, data=data, metadata=metadata
            )
            return await self.publish_envelope(envelope)

    async def publish_envelope(self, envelope: Envelope) -> Published:
        """Publish an envelope built elsewhere (the gateway's client publishes)."""
        assert envelope.room is not None
        room = envelope.room
        async with translate_errors("publish"):
            offset, epoch = await self._script(
                keys=[keys.room_history(room), keys.room_meta(room)],
                args=[
                    encode(envelope),
                    self._history_maxlen,
                    secrets.token_hex(4),
                    keys.room_channel(room),
                    self._publish_command,
                ],
            )
        return Published(
            **{f: getattr(envelope, f) for f in envelope.__struct_fields__},
            offset=int(offset),
            epoch=epoch.decode() if isinstance(epoch, bytes) else str(epoch),
        )
