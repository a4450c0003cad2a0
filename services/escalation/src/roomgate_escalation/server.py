"""One escalation replica, the process minus ``main``: the Redis client, store, publisher,
gRPC server (``service.EscalationServicer``), bus consumer and timer loop, started and
stopped in order. Owns every long-lived resource (no globals). Tests run it in-process."""

from __future__ import annotations

import logging

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from roomgate.escalation.v1 import escalation_pb2_grpc as pb_grpc
from roomgate_common.grpcserver import GrpcServer
from roomgate_common.publisher import Publisher
from roomgate_common.redis_adapter import Redis, connect

from roomgate_escalation.alerts import AlertService
from roomgate_escalation.callers import CallerAuthInterceptor
from roomgate_escalation.consumer import BusConsumer
from roomgate_escalation.events import AlertEvents
from roomgate_escalation.metrics import PREFIX, EscalationMetrics
from roomgate_escalation.policy import PolicyConfig
from roomgate_escalation.service import SERVICE_NAME, EscalationServicer
from roomgate_escalation.settings import EscalationSettings
from roomgate_escalation.store import EscalationStore
from roomgate_escalation.timers import TimerLoop

log = logging.getLogger(__name__)


class EscalationReplica:
    def __init__(
        self,
        settings: EscalationSettings,
        *,
        config: PolicyConfig | None = None,
        registry: CollectorRegistry | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.settings = settings
        self.config = config if config is not None else settings.policy_config()
        self.registry = registry or CollectorRegistry()
        self.metrics = EscalationMetrics(self.registry)
        self.redis: Redis = connect(settings.redis_url, name="roomgate-escalation")
        self.store = EscalationStore(
            self.redis,
            timeline_max=settings.escalation_timeline_max,
            retention_s=settings.escalation_resolved_retention,
        )
        self.events = AlertEvents(
            Publisher(
                self.redis,
                sender=settings.escalation_sender,
                history=settings.history_policy,
                mailbox_cap=settings.mailbox_cap,
                mailbox_ttl=settings.mailbox_ttl,
                durable_rooms=settings.durable_rooms,
            ),
            sender=settings.escalation_sender,
        )
        self.timers = TimerLoop(
            self.store,
            self.events,
            self.metrics,
            owner=settings.escalation_consumer_name,
            lease_ms=settings.escalation_lease_ms,
            poll_interval=settings.escalation_poll_interval,
            batch=settings.escalation_claim_batch,
            concurrency=settings.escalation_fire_concurrency,
            chaos_pause=settings.escalation_chaos_pause,
            chaos_phase=settings.escalation_chaos_phase,
        )
        self.alerts = AlertService(
            self.store,
            self.events,
            self.config,
            self.metrics,
            max_active=settings.escalation_max_active_alerts,
            on_scheduled=self.timers.wake,
        )
        self.consumer = BusConsumer(
            self.alerts,
            self.metrics,
            group=settings.escalation_consumer_group,
            consumer=settings.escalation_consumer_name,
            reclaim_idle_ms=settings.escalation_reclaim_idle_ms,
            reclaim_interval=settings.escalation_reclaim_interval,
        )
        servicer = EscalationServicer(self.alerts)
        self.callers = CallerAuthInterceptor(
            settings.auth_addr,
            permission=settings.escalation_permission,
            timeout=settings.auth_timeout,
        )
        self.grpc = GrpcServer(
            settings.escalation_listen,
            service_names=[SERVICE_NAME],
            register=lambda server: pb_grpc.add_EscalationServiceServicer_to_server(
                servicer, server
            ),
            registry=self.registry,
            metrics_prefix=PREFIX,
            tracer_provider=tracer_provider,
            interceptors=[self.callers],
        )
        self.port = 0

    async def start(self) -> int:
        """Start the bus consumer and timers, then serve gRPC; returns the gRPC port."""
        await self.consumer.start()
        self.timers.start()
        self.port = await self.grpc.start()
        log.info("escalation replica started", extra={"port": self.port})
        return self.port

    async def stop(self) -> None:
        """Report NOT_SERVING and finish in-flight calls, stop reading the bus, hand the
        claimed timers back (another replica fires them at once), close Redis."""
        grace = self.settings.shutdown_grace
        await self.grpc.stop(grace / 2)
        await self.consumer.stop(grace / 4)
        await self.timers.stop(grace / 4)
        await self.callers.close()
        await self.redis.aclose()
        log.info("escalation replica stopped")
