"""Fan-out: a room message from the bus (``<offset> <epoch> <JSON>``) becomes one
``Outgoing`` — decoded and serialised once, its ttl and priority read, its trace context
kept — and is handed to every local member of the room (``Connection.deliver``, which
queues it: fan-out never waits for a client). ``catch_up`` replays, after the bus
reconnects, what each served room's history holds beyond the last offset delivered."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Tracer
from roomgate_common.envelope import Envelope, encode
from roomgate_common.publisher import split_bus_message
from roomgate_common.telemetry import extract_trace

from roomgate_gateway.metrics import GatewayMetrics
from roomgate_gateway.outbound import Outgoing
from roomgate_gateway.recovery import RoomPositions
from roomgate_gateway.store import BUS_ERRORS, GatewayStore

if TYPE_CHECKING:
    from roomgate_gateway.connection import Connection

_envelope_decoder = msgspec.json.Decoder(Envelope)


class Fanout:
    def __init__(
        self,
        members: dict[str, set[Connection]],
        positions: RoomPositions,
        store: GatewayStore,
        metrics: GatewayMetrics,
        tracer: Tracer,
    ) -> None:
        self._rooms = members  # written by the room table only (rooms.py)
        self._positions = positions
        self._store = store
        self._metrics = metrics
        self._tracer = tracer

    def from_bus(self, room: str | None, raw: bytes) -> Outgoing | None:
        """A message in bus format (``<offset> <epoch> <JSON>``), ready for the sockets."""
        try:
            offset, epoch, payload = split_bus_message(raw)
        except ValueError:
            self._metrics.drops.labels("malformed").inc()
            return None
        return self.outgoing(room, offset, epoch, payload)

    def outgoing(
        self, room: str | None, offset: int, epoch: str, payload: bytes
    ) -> Outgoing | None:
        try:
            env = _envelope_decoder.decode(payload)
        except msgspec.MsgspecError:
            self._metrics.drops.labels("malformed").inc()
            return None
        md = env.metadata
        md["offset"] = offset
        md["epoch"] = epoch
        ttl = md.get("ttl")
        expires_at = None
        age = _age_seconds(env.timestamp)  # once per message: ttl and delivery latency
        if isinstance(ttl, int) and ttl > 0:
            if age >= ttl:
                self._metrics.drops.labels("expired").inc()
                return None
            expires_at = time.monotonic() + ttl - age
        priority = md.get("priority", "normal")
        if priority not in ("high", "normal", "low"):
            priority = "normal"
        return Outgoing(
            encode(env).decode(),
            priority,
            expires_at,
            room or env.room,
            offset,
            env.id if md.get("requiresAck") else None,
            epoch=epoch,
            age=age,
            trace=_trace_of(md),
        )

    def on_room_message(self, room: str, raw: bytes) -> None:
        members = self._rooms.get(room)
        if not members:
            return
        try:
            offset, epoch, payload = split_bus_message(raw)
        except ValueError:
            self._metrics.drops.labels("malformed").inc()
            return
        if not self._positions.advance(room, epoch, offset):
            return  # already delivered (a catch-up after a bus reconnect overlapped)
        out = self.outgoing(room, offset, epoch, payload)
        if out is None:
            return
        span = None
        token = None
        if out.trace is not None:
            span = self._tracer.start_span(
                "deliver",
                context=extract_trace(out.trace),
                attributes={"roomgate.room": room, "roomgate.recipients": len(members)},
            )
            token = otel_context.attach(trace.set_span_in_context(span))
        try:
            for conn in tuple(members):
                conn.deliver(out)  # counted when written (coalescing.py)
            self._metrics.delivery_latency.observe(max(0.0, out.age))
        finally:
            if span is not None:
                span.end()
            if token is not None:
                otel_context.detach(token)

    async def catch_up(self) -> None:
        """Hand local members what was published while the bus subscriber was away (from
        each served room's history), so no accepted message is missed live. Duplicates
        with the live stream are dropped by offset; a room whose history was lost (a new
        epoch) is skipped: its clients see the new epoch and reload."""
        for room, (epoch, last) in self._positions.items():
            try:
                if await self._store.room_epoch(room) != epoch:
                    continue
                entries = await self._store.history_after(room, last)
            except BUS_ERRORS:
                return
            for offset, fields in entries:
                self.on_room_message(room, b"%d %s %s" % (offset, epoch.encode(), fields[b"m"]))


def _trace_of(md: dict[str, Any]) -> dict[str, str] | None:
    """The W3C trace context carried in an envelope's metadata (None without one)."""
    parent = md.get("traceparent")
    if not isinstance(parent, str):
        return None
    state = md.get("tracestate")
    return {"traceparent": parent, **({"tracestate": state} if isinstance(state, str) else {})}


def _age_seconds(timestamp: str) -> float:
    try:
        return time.time() - datetime.fromisoformat(timestamp).timestamp()
    except ValueError:
        return 0.0
