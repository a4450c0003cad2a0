"""The gateway's composition root: ``start`` builds its parts, ``stop`` stops them in order,
``ready`` says whether it can serve. One per process, owned by the ASGI lifespan (app.py).

The parts, one module per concern:

- ``store``: the one Redis seam for commands (``bus``: the pub/sub connection);
- ``rooms``: the room table (connections, room members, each principal's connections);
- ``admission``: authenticate, count cluster-wide, register and unregister;
- ``personal``: personal rooms at the welcome, mailbox delivery, requiresAck filing;
- ``subscriptions``: authorisation (cached), subscribe (and recover), unsubscribe, recheck;
- ``commands``: the per-user rate, client publish, alert commands, acks; the bus end of
  every publish path;
- ``fanout``: a bus message to every local member, and the catch-up after a bus reconnect;
- ``control``: ACL changes, the live policy, revocations, drain commands;
- ``upkeep``: the presence heartbeat, dead gateways forgotten, the client heartbeat sweep;
- ``drain``: closing the clients in waves;
- ``tasks``: the background tasks, owned and cancelled on stop.

``Gateway`` is what a ``Connection`` sees (``host.ConnectionHost``) and what the publish
APIs and tests use; it holds no logic of its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Tracer
from roomgate_common.credentials import CredentialCache
from roomgate_common.errors import BusBusy, BusUnavailable
from roomgate_common.publisher import Publisher

from roomgate_gateway import recovery
from roomgate_gateway.admission import Admission
from roomgate_gateway.agents import AgentPresence
from roomgate_gateway.budget import InboundBudgetPolicy
from roomgate_gateway.clients import (
    KIND_NAMES,
    AuthClient,
    EscalationClient,
    Principal,
    RoomAuthzClient,
)
from roomgate_gateway.coalescing import WriteCoalescer
from roomgate_gateway.commands import Commands
from roomgate_gateway.control import Control, LivePolicy, control_channels
from roomgate_gateway.counts import ConnectionCounts
from roomgate_gateway.drain import Drain
from roomgate_gateway.fanout import Fanout
from roomgate_gateway.handshakes import Handshakes
from roomgate_gateway.limits import Limits
from roomgate_gateway.mailboxwrites import MailboxWrites
from roomgate_gateway.metrics import GatewayMetrics
from roomgate_gateway.personal import PersonalRooms
from roomgate_gateway.readiness import LastAnswer
from roomgate_gateway.revocation import sweep_revoked
from roomgate_gateway.rooms import RoomTable
from roomgate_gateway.settings import GatewaySettings
from roomgate_gateway.store import BUS_ERRORS, GatewayStore
from roomgate_gateway.subscriptions import Authorizer, Subscriptions
from roomgate_gateway.tasks import Tasks
from roomgate_gateway.upkeep import Upkeep

if TYPE_CHECKING:
    from roomgate_common.envelope import Envelope
    from roomgate_common.publisher import Published
    from roomgate_common.redis_adapter import Redis

    from roomgate_gateway import protocol as p
    from roomgate_gateway.bus import RoomBus
    from roomgate_gateway.clients import Decision
    from roomgate_gateway.connection import Connection
    from roomgate_gateway.outbound import Outgoing

log = logging.getLogger(__name__)

# How long stop waits for the background tasks, the agent presence and the mailbox writes.
STOP_GRACE = 2.0


class Gateway:
    # The calls of a connection (host.ConnectionHost) and of the publish APIs: the parts'
    # own methods, bound in start() (no call through the gateway on a hot path).
    authenticate: Callable[[str], Coroutine[Any, Any, Principal]]
    register: Callable[[Connection], Coroutine[Any, Any, str | None]]
    unregister: Callable[[Connection], Coroutine[Any, Any, None]]
    join_personal_rooms: Callable[[Connection], Coroutine[Any, Any, None]]
    keep_until_acked: Callable[[Connection, Outgoing], None]
    within_rate: Callable[[Connection], Coroutine[Any, Any, bool]]
    subscribe: Callable[[Connection, p.Subscribe], Coroutine[Any, Any, None]]
    unsubscribe: Callable[[Connection, p.Unsubscribe], Coroutine[Any, Any, None]]
    client_publish: Callable[[Connection, p.Event], Coroutine[Any, Any, None]]
    acked: Callable[[Connection, str], None]
    publish: Callable[[Envelope], Coroutine[Any, Any, Published]]
    publish_many: Callable[[list[Envelope]], Coroutine[Any, Any, list[Published]]]

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
        # The limits in force: the settings', then the live policy's (control.LivePolicy)
        self.limits = Limits.from_settings(settings)
        self.budget_policy = InboundBudgetPolicy(
            rate=settings.inbound_rate,
            burst=settings.inbound_burst,
            ping_cost=settings.inbound_ping_cost,
            yield_every=settings.inbound_yield_every,
        )
        # Connections between accept and welcome (handshakes.py): bounded
        self.handshakes = Handshakes(settings.max_pending_connects)
        self.coalescer = WriteCoalescer(self.metrics)
        # Service tokens of the publish APIs that auth verified (credentials.py)
        self.publish_credentials: CredentialCache[Principal] = CredentialCache(
            settings.publish_credential_ttl,
            settings.publish_credential_cache_size,
            kind_of=lambda principal: KIND_NAMES.get(principal.kind, ""),
        )
        # The last offset handed to each served room's members (recovery.py)
        self.positions = recovery.RoomPositions()
        self.tasks = Tasks()
        # Redis's last good PING, for /readyz (readiness.py)
        self.redis_answers = LastAnswer(grace=settings.ready_grace, clock=time.monotonic)
        self.store: GatewayStore
        self.redis: Redis
        self.publisher: Publisher
        self.authz: RoomAuthzClient
        self.escalation: EscalationClient | None
        self.bus: RoomBus
        self.table: RoomTable
        self.connections: set[Connection]
        self.rooms: dict[str, set[Connection]]
        self.drainer: Drain | None = None

    # ------------------------------------------------------------------ lifespan
    @property
    def auth(self) -> AuthClient:
        """The auth client (admission's: one place, replaceable)."""
        return self.admission.auth

    @auth.setter
    def auth(self, client: AuthClient) -> None:
        self.admission.auth = client

    async def start(self) -> None:
        from roomgate_gateway.bus import RoomBus

        s = self.settings
        m, tracer = self.metrics, self.tracer
        self.store = GatewayStore.connect(
            s.redis_url,
            s.gateway_id,
            pool_size=s.redis_pool_size,
            pool_timeout=s.redis_pool_timeout,
            pipeline_max=s.redis_pipeline_max,
            pipeline_sizes=self.metrics.redis_pipeline_commands.observe,
        )
        self.redis = self.store.redis
        self.publisher = Publisher(
            self.redis,
            sender="gateway",
            tracer=tracer,
            history=s.history_policy,
            mailbox_cap=s.mailbox_cap,
            mailbox_ttl=s.mailbox_ttl,
            durable_rooms=s.durable_rooms,
        )
        self.agent_presence = AgentPresence(
            self.publisher, m, gateway_id=s.gateway_id, window=s.agent_presence_window
        )
        self.mailbox_writes = MailboxWrites(
            self.redis,
            m,
            cap=s.mailbox_cap,
            ttl_seconds=s.mailbox_ttl,
            batch_max=s.mailbox_batch_max,
            backlog_max=s.mailbox_backlog_max,
        )
        self.counts = ConnectionCounts(self.store)
        auth = AuthClient(
            s.auth_addr,
            timeout=s.auth_timeout,
            breaker_failures=s.auth_breaker_failures,
            breaker_recovery=s.auth_breaker_recovery,
            max_token_bytes=s.max_token_bytes,
            batch_max=s.auth_batch_max,
            calls_in_flight=s.auth_calls_in_flight,
            max_waiting=s.auth_queue_max,
            ready_grace=s.ready_grace,
            tracer=tracer,
        )
        self.authz = RoomAuthzClient(
            s.roomauthz_addr,
            timeout=s.auth_timeout,
            batch_max=s.authz_batch_max,
            calls_in_flight=s.authz_calls_in_flight,
            tracer=tracer,
        )
        self.escalation = (
            EscalationClient(s.escalation_addr, timeout=s.auth_timeout, tracer=tracer)
            if s.escalation_addr
            else None
        )

        # The members of each room: written by the table, read by the fan-out, which the
        # bus calls directly (on_room: the hot path has no hop through the gateway).
        members: dict[str, set[Connection]] = {}
        self.fanout = Fanout(members, self.positions, self.store, m, tracer)
        self.bus = RoomBus(
            s.redis_url,
            on_room=self.fanout.on_room_message,
            on_control=self._on_control,
            control_channels=control_channels(s.gateway_id),
            metrics=m,
            on_reconnect=self.catch_up,
        )
        self.table = RoomTable(members, self.bus, self.positions, m)
        self.connections, self.rooms = self.table.connections, self.table.rooms

        def limits() -> Limits:
            return self.limits

        self.admission = Admission(
            auth,
            self.counts,
            self.table,
            self.agent_presence,
            limits=limits,
            connects_per_minute=s.max_connects_per_principal_per_minute,
            metrics=m,
            tracer=tracer,
        )
        self.personal = PersonalRooms(self.table, self.fanout, self.store, self.mailbox_writes, m)
        self.authorizer = Authorizer(self.authz, s.authz_cache_ttl, m)
        self.subscriptions = Subscriptions(
            self.table,
            self.bus,
            self.authorizer,
            self.fanout,
            self.store,
            s.history_policy,
            limits=limits,
            max_rooms=s.max_rooms_per_gateway,
            metrics=m,
            tracer=tracer,
        )
        self.commands = Commands(
            self.publisher,
            self.authorizer,
            self.counts,
            self.personal,
            self.escalation,
            limits=limits,
            metrics=m,
            tracer=tracer,
        )
        self.upkeep = Upkeep(
            self.store,
            self.table,
            served_rooms=lambda: self.bus.rooms,
            limits=limits,
            draining=lambda: self.draining,
            presence_interval=s.presence_interval,
            metrics=m,
        )
        self.drainer = Drain(
            self.table,
            report_presence=self.upkeep.report_presence,
            waves=s.drain_waves,
            seconds=s.drain_seconds,
            metrics=m,
        )
        self.policy = LivePolicy(
            self.store,
            Limits.from_settings(s),
            current=limits,
            apply=self._apply_limits,
            applied=self.upkeep.report_presence,
            metrics=m,
        )
        self.control = Control(
            self.table,
            self.authorizer,
            self.subscriptions,
            self.policy,
            self.publish_credentials,
            drain=self.drainer.drain,
            tasks=self.tasks,
            gateway_id=s.gateway_id,
        )

        self.authenticate = self.admission.authenticate
        self.register = self.admission.register
        self.unregister = self.admission.unregister
        self.join_personal_rooms = self.personal.join
        self.keep_until_acked = self.personal.keep_until_acked
        self.subscribe = self.subscriptions.subscribe
        self.unsubscribe = self.subscriptions.unsubscribe
        self.within_rate = self.commands.within_rate
        self.client_publish = self.commands.client_publish
        self.acked = self.commands.acked
        self.publish = self.commands.publish
        self.publish_many = self.commands.publish_many

        await self.bus.start()
        await self.policy.load()
        self.upkeep.start(self.tasks)
        log.info("gateway started", extra={"gateway": s.gateway_id})

    async def stop(self) -> None:
        await self.tasks.cancel_all(STOP_GRACE)
        await self.agent_presence.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.mailbox_writes.flush(), STOP_GRACE)
        with contextlib.suppress(*BUS_ERRORS):
            await self.store.withdraw()
        await self.bus.stop()
        await self.auth.close()
        await self.authz.close()
        if self.escalation is not None:
            await self.escalation.close()
        await self.store.close()

    async def ready(self) -> dict[str, bool]:
        """/readyz: not draining, Redis and auth answer. Both checks run at once, each
        bounded by ``ready_check_timeout``; one without an answer in time counts as its
        dependency's last good answer, for ``ready_grace`` (readiness.py)."""
        timeout = self.settings.ready_check_timeout
        redis, auth = await asyncio.gather(self._redis_ready(timeout), self.auth.ready(timeout))
        return {"not_draining": not self.draining, "redis": redis, "auth": auth}

    async def _redis_ready(self, within: float) -> bool:
        if not self.bus.connected.is_set():  # the subscriber lost Redis: no fan-out
            return self.redis_answers.answered(False)
        try:
            async with asyncio.timeout(within):
                return self.redis_answers.answered(await self.store.ping())
        except TimeoutError:
            return self.redis_answers.timed_out()
        except BusBusy:  # every pooled connection in use: Redis answers, this process is busy
            return self.redis_answers.timed_out()
        except BusUnavailable:
            return self.redis_answers.answered(False)

    @property
    def draining(self) -> bool:
        return self.drainer is not None and self.drainer.draining

    async def recheck(self, conn: Connection, rooms: list[str] | None = None) -> None:
        await self.subscriptions.recheck(conn, rooms)

    async def authorize(
        self,
        principal: Principal,
        room: str,
        action: str,
        message_type: str = "",
        parent: otel_context.Context | None = None,
    ) -> Decision:
        return await self.authorizer.authorize(principal, room, action, message_type, parent)

    async def drain(self, partial: float = 1.0) -> None:
        """Close the clients (or ``partial`` of them) in waves (drain.py)."""
        assert self.drainer is not None
        await self.drainer.drain(partial)

    async def catch_up(self) -> None:
        """After the bus reconnects: what it missed. Revocations announced meanwhile: the
        sessions are checked against Redis, and the publish APIs' kept credentials are
        verified again; room messages: each served room's history (fanout.py); the live
        policy (a change announced meanwhile, or none read at start: Redis came later)."""
        self.publish_credentials.clear()
        await sweep_revoked(self.table, self.store)
        await self.fanout.catch_up()
        await self.policy.load()

    def _on_control(self, channel: str, data: bytes) -> None:
        self.control.on_control_message(channel, data)

    def _apply_limits(self, limits: Limits) -> None:
        self.limits = limits
