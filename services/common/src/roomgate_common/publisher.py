"""Publish an event into a room through Redis, so every gateway serving the room delivers it.

This is the only place that writes to rooms: backends (through this class or the gateway's
HTTP and gRPC publish APIs) and services (escalation) all come through here.

One Lua script (publisher_publish.lua) makes a publish atomic: it gives the message the
room's next position (offset), appends it to the room's history stream (id ``<offset>-1``,
bounded) and publishes ``b"<offset> <epoch> <envelope JSON>"`` on the room's channel
(``SPUBLISH`` in a Redis Cluster: the channel shares the ``{room}`` hash tag with the room's
keys). The room's epoch is created on first use and changes only when the room's metadata
is lost, which tells a recovering client that offsets from before cannot be trusted.
"""

from __future__ import annotations

import secrets
from typing import Any

from opentelemetry import trace

from roomgate_common import keys
from roomgate_common.envelope import Envelope, Priority, encode, make_envelope
from roomgate_common.history import DEFAULT_HISTORY, HistoryPolicy
from roomgate_common.lua import load_lua
from roomgate_common.mailbox import (
    DEFAULT_MAILBOX_CAP,
    DEFAULT_MAILBOX_TTL,
    FILE_FUNCTION,
    is_durable,
    mailbox_user,
)
from roomgate_common.redis_adapter import Redis, is_cluster, translate_errors
from roomgate_common.telemetry import inject_trace

_tracer = trace.get_tracer("roomgate.publisher")


PUBLISH_SCRIPT = FILE_FUNCTION + load_lua(__package__, "publisher_publish.lua")
"""The publish script (publisher_publish.lua, after the mailbox's ``file_in_mailbox``)."""


class Published(Envelope, kw_only=True):
    """The envelope as sent, with the room position it was given."""

    offset: int = 0
    epoch: str = ""
    # Messages evicted from the user's mailbox to make room (count them in your metrics).
    mailbox_evicted: int = 0


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
        history: HistoryPolicy | str = DEFAULT_HISTORY,
        mailbox_cap: int = DEFAULT_MAILBOX_CAP,
        mailbox_ttl: int = DEFAULT_MAILBOX_TTL,
        durable_rooms: str = "",
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._tracer = tracer or _tracer
        self._redis = redis
        self._sender = sender
        self._history = HistoryPolicy.parse(history) if isinstance(history, str) else history
        self._mailbox_cap = mailbox_cap
        self._mailbox_ttl = mailbox_ttl
        self._durable = durable_rooms
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
        """Publish an envelope built elsewhere (the gateway's client publishes). Messages of
        a ``user-{id}`` room are marked ``requiresAck`` and filed in that user's mailbox."""
        room_keys, args = self._script_call(envelope)
        async with translate_errors("publish"):
            result = await self._script(keys=room_keys, args=args)
        return _published(envelope, result)

    async def publish_envelopes(self, envelopes: list[Envelope]) -> list[Published]:
        """Publish several envelopes in one round trip (a pipeline; each is published as
        ``publish_envelope`` does, in order). Raises ``BusUnavailable`` when Redis is down:
        then some of them may have been published (each one wholly or not at all)."""
        if is_cluster(self._redis):  # their rooms live on different shards: one by one
            return [await self.publish_envelope(envelope) for envelope in envelopes]
        calls = [self._script_call(envelope) for envelope in envelopes]
        async with translate_errors("publish"):
            pipe = self._redis.pipeline(transaction=False)
            for room_keys, args in calls:
                await self._script(keys=room_keys, args=args, client=pipe)
            results = await pipe.execute()
        return [_published(e, r) for e, r in zip(envelopes, results, strict=True)]

    def _script_call(self, envelope: Envelope) -> tuple[list[str], list[Any]]:
        assert envelope.room is not None
        room = envelope.room
        bound = self._history.bound(room)
        user = mailbox_user(room)
        room_keys = [keys.room_history(room), keys.room_meta(room)]
        if user is not None:
            envelope.metadata["requiresAck"] = True
            room_keys += keys.mailbox_keys(user)
        elif self._durable and is_durable(room, self._durable):
            envelope.metadata["requiresAck"] = True  # gateways file it per user on delivery
        return room_keys, [
            encode(envelope),
            bound.max_messages,
            secrets.token_hex(4),
            keys.room_channel(room),
            self._publish_command,
            bound.max_age * 1000,
            envelope.id,
            envelope.metadata.get("priority", "normal"),
            self._mailbox_cap,
            self._mailbox_ttl * 1000,
        ]


def _published(envelope: Envelope, result: Any) -> Published:
    offset, epoch, evicted = result
    return Published(
        **{f: getattr(envelope, f) for f in envelope.__struct_fields__},
        offset=int(offset),
        epoch=epoch.decode() if isinstance(epoch, bytes) else str(epoch),
        mailbox_evicted=int(evicted),
    )
