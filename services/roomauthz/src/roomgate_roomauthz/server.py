"""The roomauthz process minus ``main``: Redis client, ACL store and cache, invalidation
listener and the gRPC server with the servicers of ``service``. Tests run it in-process on
``127.0.0.1:0``."""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health_pb2
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from roomgate.roomauthz.v1 import roomauthz_pb2_grpc as pb_grpc
from roomgate_common.grpcserver import GrpcServer
from roomgate_common.redis_adapter import Redis, connect

from roomgate_roomauthz.acl import AclCache, AclInvalidationListener, AclStore
from roomgate_roomauthz.policy import Policy
from roomgate_roomauthz.policy_file import load_policy
from roomgate_roomauthz.service import (
    METRICS_PREFIX,
    AclAdminServicer,
    Metrics,
    RoomAuthzServicer,
)
from roomgate_roomauthz.settings import RoomAuthzSettings

log = logging.getLogger(__name__)

SERVICE_NAMES = ("roomgate.roomauthz.v1.RoomAuthzService", "roomgate.roomauthz.v1.AclAdminService")


class RoomAuthzServer:
    """``await start()`` returns the gRPC port; ``await stop()`` drains and closes everything.

    Health: "" is SERVING from start to stop (liveness); the two service names are also
    NOT_SERVING while the ACL invalidation subscription to Redis is down (readiness).
    """

    def __init__(
        self,
        settings: RoomAuthzSettings,
        *,
        registry: CollectorRegistry | None = None,
        tracer_provider: TracerProvider | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.policy = policy or load_policy(settings.policy_file)
        self.redis: Redis = connect(settings.redis_url, name="roomgate-roomauthz")
        self.cache = AclCache(settings.acl_cache_ttl)
        self.store = AclStore(self.redis, self.cache)
        self.metrics = Metrics(self.registry)
        if not settings.admin_secret:
            log.warning("ROOMGATE_ADMIN_SECRET is empty: every AclAdminService call is refused")
        self.authz = RoomAuthzServicer(self.policy, self.store, self.metrics, settings.max_batch)
        self.admin = AclAdminServicer(self.store, settings.admin_secret, settings.max_acl_changes)
        self.grpc = GrpcServer(
            settings.listen,
            service_names=SERVICE_NAMES,
            register=self._register,
            registry=self.registry,
            metrics_prefix=METRICS_PREFIX,
            tracer_provider=tracer_provider,
        )
        self.listener = AclInvalidationListener(self.redis, self.cache, on_health=self._set_ready)
        self.port = 0

    def _register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_RoomAuthzServiceServicer_to_server(self.authz, server)
        pb_grpc.add_AclAdminServiceServicer_to_server(self.admin, server)

    async def _set_ready(self, ready: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in SERVICE_NAMES:
            await self.grpc.health.set(name, status)

    async def start(self) -> int:
        self.port = await self.grpc.start()
        self.listener.start()
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        await self.grpc.stop(self.settings.shutdown_grace if grace is None else grace)
        await self.listener.stop()
        await self.redis.aclose()
