"""The gateway core: local rooms and connections, fan-out from the bus, subscriptions through
roomauthz, client publishing, cluster-wide limits in Redis, the live policy, presence and
draining. Owned by the ASGI lifespan (see app.py); one per process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from datetime import datetime
from typing import Any

import msgspec
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Tracer
from roomgate_common import keys, mailbox
from roomgate_common.credentials import CredentialCache
from roomgate_common.envelope import Envelope, encode, make_envelope
from roomgate_common.errors import BusBusy, BusUnavailable
from roomgate_common.publisher import Published, Publisher, split_bus_message
from roomgate_common.redis_adapter import CONNECTION_ERRORS, Redis, connect, translate_errors
from roomgate_common.telemetry import detached_span, extract_trace, inject_trace
from roomgate_roomauthz.events import parse_acl_event

from roomgate_gateway import aclchanges, recovery
from roomgate_gateway import protocol as p
from roomgate_gateway.agents import AgentPresence
from roomgate_gateway.budget import InboundBudgetPolicy
from roomgate_gateway.clients import (
    KIND_NAMES,
    AlertCommandRefused,
    AuthClient,
    AuthRejected,
    Decision,
    EscalationClient,
    PeerUnavailable,
    Principal,
    RoomAuthzClient,
)
from roomgate_gateway.coalescing import WriteCoalescer
from roomgate_gateway.codes import CloseCode, ErrorCode
from roomgate_gateway.connection import Connection
from roomgate_gateway.counts import RATE_REFUSED, ConnectionCounts
from roomgate_gateway.handshakes import Handshakes
from roomgate_gateway.limits import Limits, apply_policy
from roomgate_gateway.mailboxwrites import MailboxWrites
from roomgate_gateway.metrics import GatewayMetrics
from roomgate_gateway.outbound import Outgoing
from roomgate_gateway.revocation import close_revoked, sweep_revoked
from roomgate_gateway.settings import GatewaySettings
from roomgate_gateway.state import State

log = logging.getLogger(__name__)

_envelope_decoder = msgspec.json.Decoder(Envelope)

# Client events that are commands to the escalation service when it is configured.
ALERT_COMMANDS = frozenset({"alert_acknowledged", "alert_resolved"})

# What a Redis call of the gateway can fail with: Redis down, or this process's pool busy.
BUS_ERRORS = (BusUnavailable, BusBusy)

_KIND_CODES = {name: code for code, name in KIND_NAMES.items()}


class Gateway:
    def __init__(
        self,
        settings: GatewaySettings,
        *,
        metrics: GatewayMetrics | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or GatewayMetrics()
        self.tracer = tracer or trace.get_tracer("roomgate.gateway")
        self.limits = Limits.from_settings(settings)
        self.budget_policy = InboundBudgetPolicy(
            rate=settings.inbound_rate,
            burst=settings.inbound_burst,
            ping_cost=settings.inbound_ping_cost,
            yield_every=settings.inbound_yield_every,
        )
        self.connections: set[Connection] = set()
        self.rooms: dict[str, set[Connection]] = {}
        # (kind, id) -> that principal's connections here (a list: usually one, and a set
        # costs 216 bytes per connection)
        self.by_user: dict[tuple[int, str], list[Connection]] = {}
        self.draining = False
        # Connections between accept and welcome (handshakes.py): bounded
        self.handshakes = Handshakes(settings.max_pending_connects)
        self.coalescer = WriteCoalescer(self.metrics)
        # Service tokens of the publish APIs that auth verified (credentials.py)
        self.publish_credentials: CredentialCache[Principal] = CredentialCache(
            settings.publish_credential_ttl,
            settings.publish_credential_cache_size,
            kind_of=lambda principal: KIND_NAMES.get(principal.kind, ""),
        )
        self._authz_cache: dict[tuple[str, str, str, str], tuple[float, Decision]] = {}
        # The last offset handed to each served room's members (recovery.py)
        self.positions = recovery.RoomPositions()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.redis: Redis
        self.publisher: Publisher
        self.auth: AuthClient
        self.authz: RoomAuthzClient

    # ------------------------------------------------------------------ lifespan
    async def start(self) -> None:
        s = self.settings
        self.redis = connect(
            s.redis_url,
            name="roomgate-gateway",
            max_connections=s.redis_pool_size,
            pool_timeout=s.redis_pool_timeout,
        )
        self.history = s.history_policy
        self.publisher = Publisher(
            self.redis,
            sender="gateway",
            tracer=self.tracer,
            history=self.history,
            mailbox_cap=s.mailbox_cap,
            mailbox_ttl=s.mailbox_ttl,
            durable_rooms=s.durable_rooms,
        )
        self.agent_presence = AgentPresence(
            self.publisher,
            self.metrics,
            gateway_id=s.gateway_id,
            window=s.agent_presence_window,
        )
        self.mailbox_writes = MailboxWrites(
            self.redis,
            self.metrics,
            cap=s.mailbox_cap,
            ttl_seconds=s.mailbox_ttl,
            batch_max=s.mailbox_batch_max,
            backlog_max=s.mailbox_backlog_max,
        )
        self.counts = ConnectionCounts(self.redis, s.gateway_id)
        self.auth = AuthClient(
            s.auth_addr,
            timeout=s.auth_timeout,
            breaker_failures=s.auth_breaker_failures,
            breaker_recovery=s.auth_breaker_recovery,
            max_token_bytes=s.max_token_bytes,
            batch_max=s.auth_batch_max,
            calls_in_flight=s.auth_calls_in_flight,
            tracer=self.tracer,
        )
        self.authz = RoomAuthzClient(
            s.roomauthz_addr,
            timeout=s.auth_timeout,
            batch_max=s.authz_batch_max,
            calls_in_flight=s.authz_calls_in_flight,
            tracer=self.tracer,
        )
        self.escalation = (
            EscalationClient(s.escalation_addr, timeout=s.auth_timeout, tracer=self.tracer)
            if s.escalation_addr
            else None
        )
        from roomgate_gateway.bus import RoomBus

        self.bus = RoomBus(
            s.redis_url,
            on_room=self.on_room_message,
            on_control=self.on_control_message,
            control_channels=[
                keys.ACL_CHANGED_CHANNEL,
                keys.POLICY_CHANGED_CHANNEL,
                keys.REVOCATIONS_CHANNEL,
                keys.gateway_control_channel(s.gateway_id),
            ],
            metrics=self.metrics,
            on_reconnect=self.catch_up,
        )
        await self.bus.start()
        await self.load_policy()
        self._tasks = [
            asyncio.create_task(self._presence_loop(), name="presence"),
            asyncio.create_task(self._sweep_loop(), name="heartbeat-sweeper"),
        ]
        log.info("gateway started", extra={"gateway": s.gateway_id})

    async def stop(self) -> None:
        # redis-py may turn a cancellation inside a command into a connection error, which
        # the loops survive by design: they also watch this flag, and the wait is bounded.
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.wait(self._tasks, timeout=2.0)
        await self.agent_presence.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.mailbox_writes.flush(), 2.0)
        with contextlib.suppress(*CONNECTION_ERRORS, *BUS_ERRORS):
            await self.redis.delete(keys.gateway_presence(self.settings.gateway_id))
            await self.redis.zrem(keys.GATEWAYS, self.settings.gateway_id)
        await self.bus.stop()
        await self.auth.close()
        await self.authz.close()
        if self.escalation is not None:
            await self.escalation.close()
        await self.redis.aclose()

    async def ready(self) -> dict[str, bool]:
        checks = {"not_draining": not self.draining, "redis": self.bus.connected.is_set()}
        try:
            checks["redis"] = checks["redis"] and bool(await self.redis.ping())
        except CONNECTION_ERRORS:
            checks["redis"] = False
        checks["auth"] = await self.auth.ready()
        return checks

    # ------------------------------------------------------------------ auth
    async def authenticate(self, token: str) -> Principal:
        start = time.perf_counter()
        with self.tracer.start_as_current_span("auth") as span:
            try:
                return await self.auth.authenticate(token)
            except AuthRejected as exc:
                span.set_attribute("roomgate.auth.reason", exc.reason)
                raise
            finally:
                self.metrics.auth_latency.observe(time.perf_counter() - start)

    async def register(self, conn: Connection) -> str | None:
        """Count the connection cluster-wide; returns the refusal outcome or None."""
        assert conn.principal is not None
        limited = list(
            zip(
                self._count_keys(conn),
                (self.limits.max_connections_per_ip, self.limits.max_connections_per_user),
                strict=True,
            )
        )
        principal = f"{conn.kind}:{conn.principal.id}"
        try:
            async with translate_errors("connect"):
                refused = await self.counts.admit(
                    principal, self.settings.max_connects_per_principal_per_minute, limited
                )
        except BusUnavailable:
            return "redis_unavailable"
        except BusBusy:  # this gateway is overloaded, Redis is fine
            return "redis_busy"
        if refused == RATE_REFUSED:
            return "limit_connect_rate"
        if refused is not None:
            return ("limit_ip", "limit_user")[refused]
        self.connections.add(conn)
        self.by_user.setdefault((conn.principal.kind, conn.principal.id), []).append(conn)
        self.metrics.connections.set(len(self.connections))
        if conn.kind == "agent":
            self.agent_presence.changed(conn.user_id, True)
        return None

    async def unregister(self, conn: Connection) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        assert conn.principal is not None
        users = self.by_user.get((conn.principal.kind, conn.principal.id))
        if users is not None and conn in users:
            users.remove(conn)
            if not users:
                del self.by_user[(conn.principal.kind, conn.principal.id)]
        for room in list(conn.rooms):
            await self._leave(conn, room)
        self.metrics.connections.set(len(self.connections))
        with contextlib.suppress(*CONNECTION_ERRORS):
            await self.counts.uncount(self._count_keys(conn))
        if conn.kind == "agent":
            self.agent_presence.changed(conn.user_id, users is not None and bool(users))

    def _count_keys(self, conn: Connection) -> list[str]:
        assert conn.principal is not None
        principal = f"{conn.kind}:{conn.principal.id}"
        return [keys.conn_count_ip(conn.ip), keys.conn_count_user(principal)]

    # ------------------------------------------------------------------ rooms
    async def join_personal_rooms(self, conn: Connection) -> None:
        assert conn.principal is not None
        personal = []
        if conn.kind == "user":
            personal.append(f"user-{conn.principal.id}")
        if conn.principal.session_id:
            personal.append(f"session-{conn.principal.session_id}")
        if conn.kind == "user":  # hold the user room's live traffic until the mailbox is out
            conn.hold(personal[0])
        for room in personal:
            await self._join(conn, room)
            if not conn.holding(room):
                conn.send_message("subscribed", {"room": room, "personal": True}, room=room)
        if conn.kind == "user":
            await self._deliver_mailbox(conn, personal[0])

    async def _deliver_mailbox(self, conn: Connection, user_room: str) -> None:
        """What waits in the user's mailbox, in arrival order, before live traffic."""
        assert conn.principal is not None
        box, msgs, _low = keys.mailbox_keys(conn.principal.id)
        waiting: list[Outgoing] = []
        gone: list[str] = []
        evicted = 0
        try:
            async with translate_errors("mailbox"):
                ids = await self.redis.zrange(box, 0, -1)
                payloads = await self.redis.hmget(msgs, ids) if ids else []
                evicted = int(await self.redis.hget(msgs, mailbox.EVICTED_FIELD) or 0)
                if evicted:
                    await self.redis.hdel(msgs, mailbox.EVICTED_FIELD)
        except BUS_ERRORS:
            payloads, ids = [], []
        for envelope_id, raw in zip(ids, payloads, strict=True):
            out = self._from_bus(None, raw) if raw is not None else None
            if out is None:
                gone.append(envelope_id.decode())
            else:
                waiting.append(out)
        mine = [o for o in waiting if o.room == user_room]
        last = max((o.offset for o in mine), default=0)
        # The user room's confirmation says what the mailbox held, and what overflowed.
        conn.send_message(
            "subscribed",
            {
                "room": user_room,
                "personal": True,
                "mailbox": len(waiting),
                "recovered": evicted == 0,
                **({"missed": evicted} if evicted else {}),
            },
            room=user_room,
        )
        conn.release(
            user_room, waiting, upto=last, epoch=mine[-1].epoch if mine else "", batched=False
        )
        self.metrics.mailbox_delivered.inc(len(waiting))
        for envelope_id in gone:  # expired or unreadable: nothing to wait for
            self.mailbox_writes.remove(conn.principal.id, envelope_id)

    def keep_until_acked(self, conn: Connection, out: Outgoing) -> None:
        """A requiresAck message of a shared room, delivered to a user: file it in the user's
        mailbox too, so it survives a reconnect until acked. (User rooms are filed at publish.)"""
        if conn.kind != "user" or out.room is None or mailbox.mailbox_user(out.room):
            return
        assert conn.principal is not None
        assert out.ack_id is not None
        payload = f"{out.offset} {out.epoch} {out.frame}"
        self.mailbox_writes.file(conn.principal.id, out.ack_id, payload, out.priority)

    async def _join(self, conn: Connection, room: str) -> None:
        members = self.rooms.get(room)
        if members is None:
            members = self.rooms[room] = set()
        members.add(conn)
        conn.rooms.add(room)
        self.metrics.subscriptions.inc()
        await self.bus.join(room)

    async def _leave(self, conn: Connection, room: str) -> None:
        members = self.rooms.get(room)
        if members is None or conn not in members:
            return
        members.discard(conn)
        conn.rooms.discard(room)
        if not members:
            del self.rooms[room]
            self.positions.forget(room)
        self.metrics.subscriptions.dec()
        await self.bus.leave(room)

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
        hit = self._authz_cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        start = time.perf_counter()
        decision = await self.authz.authorize(principal, room, action, message_type, parent)
        self.metrics.authz_latency.observe(time.perf_counter() - start)
        if self.settings.authz_cache_ttl > 0:
            if len(self._authz_cache) > 100_000:
                self._authz_cache.clear()
            self._authz_cache[key] = (now + self.settings.authz_cache_ttl, decision)
        return decision

    async def subscribe(self, conn: Connection, msg: p.Subscribe) -> None:
        room = msg.data.room
        corr = msg.metadata.correlation_id if msg.metadata else None
        with detached_span(self.tracer, "subscribe", attributes={"roomgate.room": room}) as span:
            if room not in conn.rooms:
                if len(conn.rooms) >= self.limits.max_subscriptions_per_connection:
                    conn.error(
                        ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                        "subscription limit reached",
                        ref=msg,
                        room=room,
                    )
                    return
                if (
                    not self.bus.serves(room)
                    and self.bus.rooms >= self.settings.max_rooms_per_gateway
                ):
                    conn.error(
                        ErrorCode.GATEWAY_ROOM_LIMIT,
                        "this gateway serves too many rooms",
                        ref=msg,
                        room=room,
                    )
                    return
            try:
                assert conn.principal is not None
                decision = await self.authorize(
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
                    await self._join(conn, room)
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
            await self._join(conn, room)
        replay: list[Outgoing] = []
        result = recovery.NOT_RECOVERED
        epoch = ""
        last_offset = since.offset
        try:
            async with translate_errors("recover"):
                meta = await self.redis.hmget(keys.room_meta(room), ["epoch", "offset"])
                epoch = (meta[0] or b"").decode()
                top = int(meta[1] or 0)
                if recovery.needs_history(since.epoch, since.offset, epoch, top):
                    entries = await self.redis.xrange(
                        keys.room_history(room), min=f"{since.offset + 1}-1", max="+"
                    )
                    first = int(entries[0][0].split(b"-")[0]) if entries else None
                    expired = bool(entries) and _expired(
                        entries[0][1], self.history.bound(room).max_age
                    )
                    result = recovery.outcome(since.offset, top, first, expired)
                    if result.recovered:
                        for entry_id, fields in entries:
                            offset = int(entry_id.split(b"-")[0])
                            out = self._outgoing(room, offset, epoch, fields[b"m"])
                            if out is not None:
                                replay.append(out)
                                last_offset = offset
        except BUS_ERRORS:
            result = recovery.NOT_RECOVERED
        self.metrics.recoveries.labels("recovered" if result.recovered else "not_recovered").inc()
        data = recovery.subscribed_data(room, epoch, result, len(replay))
        conn.send_message("subscribed", data, room=room, correlation_id=corr)
        conn.release(room, replay, upto=last_offset, epoch=epoch, recovered=result.recovered)

    async def unsubscribe(self, conn: Connection, msg: p.Unsubscribe) -> None:
        room = msg.data.room
        if room not in conn.rooms:
            conn.error(ErrorCode.NOT_SUBSCRIBED, "not subscribed", ref=msg, room=room)
            return
        await self._leave(conn, room)
        conn.send_message(
            "unsubscribed",
            {"room": room, "reason": "client"},
            room=room,
            correlation_id=msg.metadata.correlation_id if msg.metadata else None,
        )

    # ------------------------------------------------------------------ client publish
    async def within_rate(self, conn: Connection) -> bool:
        """Count one client message against the per-user rate (cluster-wide, per minute)."""
        limit = self.limits.messages_per_user_per_minute
        try:
            async with translate_errors("rate"):
                count = await self.counts.messages_this_minute(f"{conn.kind}:{conn.user_id}")
        except BusUnavailable:
            return True  # fail open: the limit protects Redis and peers, not correctness
        except BusBusy:  # overloaded, maybe by this very client: not let through unchecked
            self.metrics.drops.labels("rate_unchecked").inc()
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
            retry_after=60 - int(self.counts.clock() % 60),
        )
        return False

    async def client_publish(self, conn: Connection, msg: p.Event) -> None:
        room = msg.room
        ctx = extract_trace(_trace_carrier(msg.metadata))
        with detached_span(
            self.tracer,
            "client_publish",
            context=ctx,
            attributes={"roomgate.room": room, "roomgate.type": msg.type},
        ) as span:
            try:
                assert conn.principal is not None
                decision = await self.authorize(
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
            if self.escalation is not None and msg.type in ALERT_COMMANDS:
                await self._alert_command(conn, msg)
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
        published = await self.publisher.publish_envelope(envelope)
        if published.mailbox_evicted:
            self.metrics.drops.labels("mailbox_full").inc(published.mailbox_evicted)
        return published

    async def publish_many(self, envelopes: list[Envelope]) -> list[Published]:
        """Publish several in one Redis round trip, in order (``publish`` for each)."""
        published = await self.publisher.publish_envelopes(envelopes)
        evicted = sum(p.mailbox_evicted for p in published)
        if evicted:
            self.metrics.drops.labels("mailbox_full").inc(evicted)
        return published

    async def _alert_command(self, conn: Connection, msg: p.Event) -> None:
        """A user's alert_acknowledged/alert_resolved goes to the escalation service, which
        stops the escalation and publishes the canonical event into `alerts`."""
        assert self.escalation is not None
        alert_id = msg.data.get("alert_id")
        if isinstance(alert_id, int) and not isinstance(alert_id, bool):
            alert_id = str(alert_id)
        if not isinstance(alert_id, str) or not alert_id:
            conn.error(ErrorCode.INVALID_MESSAGE, "`data.alert_id` is required", ref=msg)
            return
        try:
            changed = await self.escalation.command(msg.type, alert_id, conn.user_id)
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
        self.metrics.acks.inc()
        # Only an ack of a message this connection waits for touches the mailbox: acks of
        # anything else cost nothing (mailbox messages wait here too once delivered).
        if conn.ack_received(ack_id) and conn.kind == "user" and conn.principal is not None:
            self.mailbox_writes.remove(conn.principal.id, ack_id)

    # ------------------------------------------------------------------ fan-out
    def _from_bus(self, room: str | None, raw: bytes) -> Outgoing | None:
        """A message in bus format (``<offset> <epoch> <JSON>``), ready for the sockets."""
        try:
            offset, epoch, payload = split_bus_message(raw)
        except ValueError:
            self.metrics.drops.labels("malformed").inc()
            return None
        return self._outgoing(room, offset, epoch, payload)

    def _outgoing(
        self, room: str | None, offset: int, epoch: str, payload: bytes
    ) -> Outgoing | None:
        try:
            env = _envelope_decoder.decode(payload)
        except msgspec.MsgspecError:
            self.metrics.drops.labels("malformed").inc()
            return None
        md = env.metadata
        md["offset"] = offset
        md["epoch"] = epoch
        ttl = md.get("ttl")
        expires_at = None
        age = _age_seconds(env.timestamp)  # once per message: ttl and delivery latency
        if isinstance(ttl, int) and ttl > 0:
            if age >= ttl:
                self.metrics.drops.labels("expired").inc()
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
        members = self.rooms.get(room)
        if not members:
            return
        try:
            offset, epoch, payload = split_bus_message(raw)
        except ValueError:
            self.metrics.drops.labels("malformed").inc()
            return
        if not self.positions.advance(room, epoch, offset):
            return  # already delivered (a catch-up after a bus reconnect overlapped)
        out = self._outgoing(room, offset, epoch, payload)
        if out is None:
            return
        span = None
        token = None
        if out.trace is not None:
            span = self.tracer.start_span(
                "deliver",
                context=extract_trace(out.trace),
                attributes={"roomgate.room": room, "roomgate.recipients": len(members)},
            )
            token = otel_context.attach(trace.set_span_in_context(span))
        try:
            for conn in tuple(members):
                conn.deliver(out)  # counted when written (coalescing.py)
            self.metrics.delivery_latency.observe(max(0.0, out.age))
        finally:
            if span is not None:
                span.end()
                otel_context.detach(token)

    async def catch_up(self) -> None:
        """After the bus reconnects: hand local members what was published while the
        subscriber was away (from each served room's history), so no accepted message is
        missed live. Duplicates with the live stream are dropped by offset. Revocations
        announced meanwhile were missed too: the sessions are checked against Redis, and
        the publish APIs' kept credentials are verified again."""
        self.publish_credentials.clear()
        await sweep_revoked(self)
        for room, (epoch, last) in self.positions.items():
            try:
                async with translate_errors("catch-up"):
                    current = await self.redis.hget(keys.room_meta(room), "epoch")
                    if current is None or current.decode() != epoch:
                        continue  # history lost: clients see the new epoch and reload
                    entries = await self.redis.xrange(
                        keys.room_history(room), min=f"{last + 1}-1", max="+"
                    )
            except BUS_ERRORS:
                return
            for entry_id, fields in entries:
                offset = int(entry_id.split(b"-")[0])
                self.on_room_message(room, b"%d %s %s" % (offset, epoch.encode(), fields[b"m"]))

    # ------------------------------------------------------------------ control
    def on_control_message(self, channel: str, data: bytes) -> None:
        if channel == keys.ACL_CHANGED_CHANNEL:
            asyncio.get_running_loop().create_task(self._acl_changed(data))
        elif channel == keys.POLICY_CHANGED_CHANNEL:
            asyncio.get_running_loop().create_task(self.load_policy())
        elif channel == keys.REVOCATIONS_CHANNEL:
            close_revoked(self, data)
        elif channel == keys.gateway_control_channel(self.settings.gateway_id):
            try:
                command = msgspec.json.decode(data)
            except msgspec.MsgspecError:
                return
            if isinstance(command, dict) and command.get("command") == "drain":
                fraction = float(command.get("fraction", 1.0))
                asyncio.get_running_loop().create_task(self.drain(partial=fraction))

    async def _acl_changed(self, data: bytes) -> None:
        """Re-check the subscriptions the change may affect (``aclchanges``: roomauthz's
        ``may_affect``, for every relation); evict those no longer allowed. An event that
        cannot be read re-checks every subscription."""
        self._authz_cache.clear()
        try:
            changes = parse_acl_event(data).changes
        except ValueError:
            changes = ()
        if not changes:
            for conn in list(self.connections):
                await self.recheck(conn)
            return
        candidates: set[Connection] = set()
        for change in changes:
            for room in aclchanges.candidate_rooms(change):
                candidates |= self.rooms.get(room, set())
            kind, pid = aclchanges.candidate_principal(change)
            candidates.update(self.by_user.get((_KIND_CODES[kind], pid), ()))
        for conn in candidates:
            if conn.principal is None:
                continue
            rooms = aclchanges.rooms_to_recheck(changes, conn.kind, conn.user_id, conn.rooms)
            if rooms:
                await self.recheck(conn, rooms)

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
            decisions = await self.authz.authorize_many(conn.principal, rooms, "subscribe")
        except PeerUnavailable:
            return
        for decision in decisions:
            if not decision.allowed and decision.room in conn.rooms:
                await self._leave(conn, decision.room)
                conn.send_message(
                    "unsubscribed",
                    {"room": decision.room, "reason": decision.reason},
                    room=decision.room,
                )

    async def load_policy(self) -> None:
        try:
            async with translate_errors("policy"):
                raw = await self.redis.hgetall(keys.LIVE_POLICY)
        except BUS_ERRORS:
            return
        if not raw:
            return
        try:
            generation = int(raw.get(b"generation", b"0"))
            policy = msgspec.json.decode(raw.get(b"limits", b"{}"))
        except (ValueError, msgspec.MsgspecError):
            log.warning("live policy is malformed; keeping generation %d", self.limits.generation)
            return
        if not isinstance(policy, dict):
            return
        base = Limits.from_settings(self.settings)
        self.limits, rejected = apply_policy(base, policy, generation)
        self.metrics.policy_generation.set(generation)
        if rejected:
            log.warning("policy fields rejected: %s", ",".join(rejected))
        log.info("policy generation %d applied", generation)
        await self._report_presence()

    # ------------------------------------------------------------------ presence & sweeping
    async def _presence_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(*CONNECTION_ERRORS, *BUS_ERRORS):
                await self._report_presence()
                await self._forget_dead_gateways()
            await asyncio.sleep(self.settings.presence_interval)

    async def _report_presence(self) -> None:
        s = self.settings
        key = keys.gateway_presence(s.gateway_id)
        async with translate_errors("presence"):
            pipe = self.redis.pipeline(transaction=False)  # two shards in a cluster
            pipe.hset(
                key,
                mapping={
                    "connections": len(self.connections),
                    "rooms": self.bus.rooms,
                    "applied_generation": self.limits.generation,
                    "draining": int(self.draining),
                    "ts": time.time(),
                },
            )
            pipe.expire(key, max(3, int(s.presence_interval * 3)))
            pipe.zadd(keys.GATEWAYS, {s.gateway_id: time.time()})
            await pipe.execute()

    async def _forget_dead_gateways(self) -> None:
        stale_before = time.time() - self.settings.presence_interval * 6
        for gid in await self.redis.zrangebyscore(keys.GATEWAYS, "-inf", stale_before):
            gateway_id = gid.decode()
            count_keys = keys.gateway_count_keys(gateway_id)
            for key in await self.redis.smembers(count_keys):
                await self.redis.hdel(key, gateway_id)
            await self.redis.delete(count_keys)
            await self.redis.zrem(keys.GATEWAYS, gateway_id)
            log.info("forgot the connection counts of dead gateway %s", gateway_id)

    async def _sweep_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(min(1.0, self.limits.heartbeat_interval / 4))
            deadline = time.monotonic() - self.limits.heartbeat_timeout
            for conn in [c for c in self.connections if c.last_seen < deadline]:
                await conn.close(CloseCode.HEARTBEAT_TIMEOUT)
            self.metrics.queue_depth.set(sum(len(c._queue or ()) for c in self.connections))

    # ------------------------------------------------------------------ draining
    async def drain(self, partial: float = 1.0) -> None:
        """Hint every client (or ``partial`` of them) to reconnect elsewhere with jitter and
        close them with 1012 in waves over ``drain_seconds``: no reconnect storm."""
        if partial >= 1.0:
            self.draining = True
            self.metrics.draining.set(1)
            with contextlib.suppress(*CONNECTION_ERRORS, *BUS_ERRORS):
                await self._report_presence()
        conns = list(self.connections)
        random.shuffle(conns)
        conns = conns[: math.ceil(len(conns) * min(1.0, max(0.0, partial)))]
        waves = max(1, self.settings.drain_waves)
        per_wave = math.ceil(len(conns) / waves) if conns else 0
        pause = self.settings.drain_seconds / waves
        grace = max(0.1, pause)
        for i in range(waves):
            wave = conns[i * per_wave : (i + 1) * per_wave]
            if not wave and i * per_wave >= len(conns):
                break
            await asyncio.gather(*(c.drain(grace) for c in wave))
            if (i + 1) * per_wave < len(conns):
                await asyncio.sleep(pause)


def _expired(fields: dict[bytes, bytes], max_age: int) -> bool:
    """A history entry older than the room's age bound (not yet trimmed) counts as gone."""
    appended = fields.get(b"t")
    return bool(max_age and appended and int(appended) < (time.time() - max_age) * 1000)


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
