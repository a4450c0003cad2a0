"""What clients send beyond subscriptions: each message counted against the per-user rate
(cluster-wide, per minute), client publishing (authorised by roomauthz, then the same bus
as the publish APIs), the alert commands that go to the escalation service, and acks of
server messages. ``publish``/``publish_many`` are the bus end of every publish path
(WebSocket, HTTP, gRPC): they count what a full mailbox had to evict."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Tracer
from roomgate_common.envelope import Envelope, make_envelope
from roomgate_common.errors import BusBusy, BusUnavailable
from roomgate_common.publisher import Published, Publisher
from roomgate_common.telemetry import detached_span, extract_trace, inject_trace

from roomgate_gateway import protocol as p
from roomgate_gateway.clients import AlertCommandRefused, EscalationClient, PeerUnavailable
from roomgate_gateway.codes import CloseCode, ErrorCode
from roomgate_gateway.counts import ConnectionCounts
from roomgate_gateway.limits import Limits
from roomgate_gateway.metrics import GatewayMetrics
from roomgate_gateway.personal import PersonalRooms
from roomgate_gateway.subscriptions import Authorizer

if TYPE_CHECKING:
    from roomgate_gateway.connection import Connection

# Client events that are commands to the escalation service when it is configured.
ALERT_COMMANDS = frozenset({"alert_acknowledged", "alert_resolved"})


class Commands:
    def __init__(
        self,
        publisher: Publisher,
        authorizer: Authorizer,
        counts: ConnectionCounts,
        personal: PersonalRooms,
        escalation: EscalationClient | None,
        *,
        limits: Callable[[], Limits],
        metrics: GatewayMetrics,
        tracer: Tracer,
    ) -> None:
        self._publisher = publisher
        self._authorizer = authorizer
        self._counts = counts
        self._personal = personal
        self._escalation = escalation
        self._limits = limits
        self._metrics = metrics
        self._tracer = tracer

    async def within_rate(self, conn: Connection) -> bool:
        """Count one client message against the per-user rate (cluster-wide, per minute)."""
        limit = self._limits().messages_per_user_per_minute
        try:
            count = await self._counts.messages_this_minute(f"{conn.kind}:{conn.user_id}")
        except BusUnavailable:
            return True  # fail open: the limit protects Redis and peers, not correctness
        except BusBusy:  # overloaded, maybe by this very client: not let through unchecked
            self._metrics.drops.labels("rate_unchecked").inc()
            conn.error(ErrorCode.UNAVAILABLE, "gateway busy, message dropped; retry")
            return False
        if count <= limit:
            return True
        if count >= 2 * limit:
            await conn.close(CloseCode.RATE_LIMITED)
            return False
        conn.error(
            ErrorCode.RATE_LIMITED,
            f"more than {limit} messages per minute",
            retry_after=60 - int(self._counts.clock() % 60),
        )
        return False

    async def client_publish(self, conn: Connection, msg: p.Event) -> None:
        room = msg.room
        ctx = extract_trace(_trace_carrier(msg.metadata))
        with detached_span(
            self._tracer,
            "client_publish",
            context=ctx,
            attributes={"roomgate.room": room, "roomgate.type": msg.type},
        ) as span:
            try:
                assert conn.principal is not None
                decision = await self._authorizer.authorize(
                    conn.principal,
                    room,
                    "publish",
                    msg.type,
                    parent=trace.set_span_in_context(span, ctx),
                )
            except PeerUnavailable:
                conn.error(ErrorCode.UNAVAILABLE, "authorisation unavailable, retry", ref=msg)
                return
            if not decision.allowed:
                conn.error(
                    ErrorCode.PUBLISH_NOT_ALLOWED,
                    "publish refused",
                    ref=msg,
                    room=room,
                    reason=decision.reason,
                )
                return
            if self._escalation is not None and msg.type in ALERT_COMMANDS:
                await self._alert_command(self._escalation, conn, msg)
                return
            metadata: dict[str, Any] = {
                "priority": msg.metadata.priority if msg.metadata else "normal"
            }
            if msg.metadata is not None:
                if msg.metadata.correlation_id:
                    metadata["correlation_id"] = msg.metadata.correlation_id
                if msg.metadata.ttl:
                    metadata["ttl"] = msg.metadata.ttl
            inject_trace(metadata, trace.set_span_in_context(span, ctx))
            envelope = make_envelope(
                msg.type, sender=conn.sender, room=room, data=msg.data, metadata=metadata
            )
            try:
                published = await self.publish(envelope)
            except (BusUnavailable, BusBusy):
                conn.error(ErrorCode.UNAVAILABLE, "bus unavailable, message not accepted", ref=msg)
                return
            _ack(conn, msg, {"id": published.id, "room": room, "offset": published.offset})

    async def publish(self, envelope: Envelope) -> Published:
        """Publish through the bus; counts what a full mailbox had to evict."""
        published = await self._publisher.publish_envelope(envelope)
        if published.mailbox_evicted:
            self._metrics.drops.labels("mailbox_full").inc(published.mailbox_evicted)
        return published

    async def publish_many(self, envelopes: list[Envelope]) -> list[Published]:
        """Publish several in one Redis round trip, in order (``publish`` for each)."""
        published = await self._publisher.publish_envelopes(envelopes)
        evicted = sum(p.mailbox_evicted for p in published)
        if evicted:
            self._metrics.drops.labels("mailbox_full").inc(evicted)
        return published

    async def _alert_command(
        self, escalation: EscalationClient, conn: Connection, msg: p.Event
    ) -> None:
        """A user's alert_acknowledged/alert_resolved goes to the escalation service, which
        stops the escalation and publishes the canonical event into `alerts`."""
        alert_id = msg.data.get("alert_id")
        if isinstance(alert_id, int) and not isinstance(alert_id, bool):
            alert_id = str(alert_id)
        if not isinstance(alert_id, str) or not alert_id:
            conn.error(ErrorCode.INVALID_MESSAGE, "`data.alert_id` is required", ref=msg)
            return
        try:
            changed = await escalation.command(msg.type, alert_id, conn.user_id)
        except AlertCommandRefused as exc:
            conn.error(ErrorCode(exc.code), exc.message, ref=msg)
            return
        except PeerUnavailable:
            conn.error(ErrorCode.UNAVAILABLE, "escalation unavailable, retry", ref=msg)
            return
        _ack(conn, msg, {"alert_id": alert_id, "changed": changed})

    def acked(self, conn: Connection, ack_id: str) -> None:
        """A client acknowledged a server message: stop resending it and take it out of the
        user's mailbox."""
        self._metrics.acks.inc()
        # Only an ack of a message this connection waits for touches the mailbox: acks of
        # anything else cost nothing (mailbox messages wait here too once delivered).
        if conn.ack_received(ack_id) and conn.kind == "user" and conn.principal is not None:
            self._personal.acked(conn, ack_id)


def _trace_carrier(md: p.ClientMetadata | None) -> dict[str, Any]:
    if md is None or not md.traceparent:
        return {}
    carrier = {"traceparent": md.traceparent}
    if md.tracestate:
        carrier["tracestate"] = md.tracestate
    return carrier


def _ack(conn: Connection, msg: p.Event, data: dict[str, Any]) -> None:
    """Answer a client message that asked for one (``requiresAck``) with ``ack``."""
    if msg.requiresAck and msg.id:
        conn.send_message(
            "ack",
            data,
            correlation_id=msg.metadata.correlation_id if msg.metadata else None,
            extra={"ackId": msg.id},
        )
