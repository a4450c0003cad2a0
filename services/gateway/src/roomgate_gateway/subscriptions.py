"""Subscriptions: roomauthz's decision (kept ``AUTHZ_CACHE_TTL``; an ACL change drops
them all), the subscription limits (per connection, rooms per gateway), ``subscribe``
(plain, or recovering from ``since``: join live holding live messages back, replay the
history after ``since``, release what the replay did not cover — ``recovery.py``),
``unsubscribe``, and ``recheck``: roomauthz asked again, and the subscriptions no longer
allowed ended with the reason."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Tracer
from roomgate_common.history import HistoryPolicy
from roomgate_common.telemetry import detached_span

from roomgate_gateway import protocol as p
from roomgate_gateway import recovery
from roomgate_gateway.clients import Decision, PeerUnavailable, Principal, RoomAuthzClient
from roomgate_gateway.codes import ErrorCode
from roomgate_gateway.fanout import Fanout
from roomgate_gateway.limits import Limits
from roomgate_gateway.metrics import GatewayMetrics
from roomgate_gateway.outbound import Outgoing
from roomgate_gateway.rooms import RoomTable
from roomgate_gateway.state import State
from roomgate_gateway.store import BUS_ERRORS, GatewayStore

if TYPE_CHECKING:
    from roomgate_gateway.bus import RoomBus
    from roomgate_gateway.connection import Connection

# Beyond this many kept decisions the cache starts again (a bound, not an LRU).
AUTHZ_CACHE_MAX = 100_000


class Authorizer:
    """roomauthz's decisions, kept ``ttl`` seconds per (token or session, room, action,
    message type)."""

    def __init__(self, authz: RoomAuthzClient, ttl: float, metrics: GatewayMetrics) -> None:
        self._authz = authz
        self._ttl = ttl
        self._metrics = metrics
        self._cache: dict[tuple[str, str, str, str], tuple[float, Decision]] = {}

    def forget(self) -> None:
        """Drop every kept decision (the ACLs changed)."""
        self._cache.clear()

    async def authorize(
        self,
        principal: Principal,
        room: str,
        action: str,
        message_type: str = "",
        parent: otel_context.Context | None = None,
    ) -> Decision:
        key = (principal.token_id or principal.session_id, room, action, message_type)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        start = time.perf_counter()
        decision = await self._authz.authorize(principal, room, action, message_type, parent)
        self._metrics.authz_latency.observe(time.perf_counter() - start)
        if self._ttl > 0:
            if len(self._cache) > AUTHZ_CACHE_MAX:
                self._cache.clear()
            self._cache[key] = (now + self._ttl, decision)
        return decision

    async def authorize_many(
        self, principal: Principal, rooms: list[str], action: str
    ) -> list[Decision]:
        """Asked again, not from the cache (a recheck)."""
        return await self._authz.authorize_many(principal, rooms, action)


class Subscriptions:
    def __init__(
        self,
        table: RoomTable,
        bus: RoomBus,
        authorizer: Authorizer,
        fanout: Fanout,
        store: GatewayStore,
        history: HistoryPolicy,
        *,
        limits: Callable[[], Limits],
        max_rooms: int,
        metrics: GatewayMetrics,
        tracer: Tracer,
    ) -> None:
        self._table = table
        self._bus = bus
        self._authorizer = authorizer
        self._fanout = fanout
        self._store = store
        self._history = history
        self._limits = limits
        self._max_rooms = max_rooms
        self._metrics = metrics
        self._tracer = tracer

    async def subscribe(self, conn: Connection, msg: p.Subscribe) -> None:
        room = msg.data.room
        corr = msg.metadata.correlation_id if msg.metadata else None
        with detached_span(self._tracer, "subscribe", attributes={"roomgate.room": room}) as span:
            if room not in conn.rooms:
                if len(conn.rooms) >= self._limits().max_subscriptions_per_connection:
                    conn.error(
                        ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                        "subscription limit reached",
                        ref=msg,
                        room=room,
                    )
                    return
                if not self._bus.serves(room) and self._bus.rooms >= self._max_rooms:
                    conn.error(
                        ErrorCode.GATEWAY_ROOM_LIMIT,
                        "this gateway serves too many rooms",
                        ref=msg,
                        room=room,
                    )
                    return
            try:
                assert conn.principal is not None
                decision = await self._authorizer.authorize(
                    conn.principal, room, "subscribe", parent=trace.set_span_in_context(span)
                )
            except PeerUnavailable:
                conn.error(
                    ErrorCode.UNAVAILABLE, "authorisation unavailable, retry", ref=msg, room=room
                )
                return
            if not decision.allowed:
                code = (
                    ErrorCode.INVALID_ROOM
                    if decision.reason == "unknown_room"
                    else ErrorCode.PERMISSION_DENIED
                )
                conn.error(code, "subscription refused", ref=msg, room=room, reason=decision.reason)
                return
            if conn.sm.state is not State.OPEN:
                return
            if msg.data.since is None:
                if room not in conn.rooms:
                    await self._table.join(conn, room)
                conn.send_message("subscribed", {"room": room}, room=room, correlation_id=corr)
                return
            await self._subscribe_recovering(conn, room, msg.data.since, corr)

    async def _subscribe_recovering(
        self, conn: Connection, room: str, since: p.Since, corr: str | None
    ) -> None:
        """Join live first (holding live messages back), replay history after ``since``,
        then release the held messages that the replay did not cover: no gap, no duplicate."""
        conn.hold(room)
        if room not in conn.rooms:  # else: a resync of a room the client is already in
            await self._table.join(conn, room)
        replay: list[Outgoing] = []
        result = recovery.NOT_RECOVERED
        epoch = ""
        last_offset = since.offset
        try:
            epoch, top = await self._store.room_position(room)
            if recovery.needs_history(since.epoch, since.offset, epoch, top):
                entries = await self._store.history_after(room, since.offset)
                first = entries[0][0] if entries else None
                expired = bool(entries) and _expired(
                    entries[0][1], self._history.bound(room).max_age
                )
                result = recovery.outcome(since.offset, top, first, expired)
                if result.recovered:
                    for offset, fields in entries:
                        out = self._fanout.outgoing(room, offset, epoch, fields[b"m"])
                        if out is not None:
                            replay.append(out)
                            last_offset = offset
        except BUS_ERRORS:
            result = recovery.NOT_RECOVERED
        self._metrics.recoveries.labels("recovered" if result.recovered else "not_recovered").inc()
        data = recovery.subscribed_data(room, epoch, result, len(replay))
        conn.send_message("subscribed", data, room=room, correlation_id=corr)
        conn.release(room, replay, upto=last_offset, epoch=epoch, recovered=result.recovered)

    async def unsubscribe(self, conn: Connection, msg: p.Unsubscribe) -> None:
        room = msg.data.room
        if room not in conn.rooms:
            conn.error(ErrorCode.NOT_SUBSCRIBED, "not subscribed", ref=msg, room=room)
            return
        await self._table.leave(conn, room)
        conn.send_message(
            "unsubscribed",
            {"room": room, "reason": "client"},
            room=room,
            correlation_id=msg.metadata.correlation_id if msg.metadata else None,
        )

    async def recheck(self, conn: Connection, rooms: list[str] | None = None) -> None:
        """Ask roomauthz again about ``rooms`` (default: every room but the personal ones)
        and evict the connection from those no longer allowed, with the reason."""
        if conn.principal is None or conn.sm.state is not State.OPEN:
            return
        personal = {f"user-{conn.user_id}", f"session-{conn.principal.session_id}"}
        rooms = [r for r in (conn.rooms if rooms is None else rooms) if r not in personal]
        if not rooms:
            return
        try:
            decisions = await self._authorizer.authorize_many(conn.principal, rooms, "subscribe")
        except PeerUnavailable:
            return
        for decision in decisions:
            if not decision.allowed and decision.room in conn.rooms:
                await self._table.leave(conn, decision.room)
                conn.send_message(
                    "unsubscribed",
                    {"room": decision.room, "reason": decision.reason},
                    room=decision.room,
                )


def _expired(fields: dict[bytes, bytes], max_age: int) -> bool:
    """A history entry older than the room's age bound (not yet trimmed) counts as gone."""
    appended = fields.get(b"t")
    return bool(max_age and appended and int(appended) < (time.time() - max_age) * 1000)
