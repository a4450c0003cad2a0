"""The auth process minus ``main``: ``AuthServer`` owns every long-lived resource (Redis
client, gRPC server with ``service.AuthServicer``, metrics endpoint) from ``start`` to
``stop``, and reports the AuthService NOT_SERVING while Redis does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from grpc_health.v1 import health_pb2
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from roomgate.auth.v1 import auth_pb2_grpc
from roomgate_common.errors import BusUnavailable
from roomgate_common.grpcserver import GrpcServer
from roomgate_common.metrics import MetricsServer
from roomgate_common.redis_adapter import Redis, connect, translate_errors

from roomgate_auth.service import METRICS_PREFIX, SERVICE_NAME, AuthMetrics, AuthServicer
from roomgate_auth.settings import AuthSettings
from roomgate_auth.store import AuthStore
from roomgate_auth.tokens import TokenPolicy

log = logging.getLogger(__name__)


class AuthServer:
    """The whole auth service in one object: ``await start()`` then ``await stop()``.

    Tests run it in-process with ``listen="127.0.0.1:0"``; ``port`` and ``metrics_port``
    are known after ``start``.
    """

    def __init__(
        self,
        settings: AuthSettings,
        *,
        policy: TokenPolicy | None = None,
        tracer_provider: TracerProvider | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy or settings.build_policy()
        self.registry = registry or CollectorRegistry()
        self.metrics = AuthMetrics(self.registry)
        self._tracer_provider = tracer_provider
        self._metrics_server = MetricsServer(self.registry, settings.metrics_listen)
        self._redis: Redis | None = None
        self._grpc: GrpcServer | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.port = 0
        self.metrics_port = 0

    @property
    def grpc(self) -> GrpcServer:
        assert self._grpc is not None, "not started"
        return self._grpc

    async def start(self) -> int:
        self._redis = connect(self.settings.redis_url, name="roomgate-auth")
        servicer = AuthServicer(
            self.policy,
            AuthStore(self._redis, self.policy),
            self.settings.admin_secret.get_secret_value(),
            self.metrics,
            self.settings.service_principals(),
            max_batch=self.settings.max_batch,
        )
        self._grpc = GrpcServer(
            self.settings.listen,
            service_names=[SERVICE_NAME],
            register=lambda server: auth_pb2_grpc.add_AuthServiceServicer_to_server(
                servicer, server
            ),
            registry=self.registry,
            metrics_prefix=METRICS_PREFIX,
            tracer_provider=self._tracer_provider,
        )
        if self.settings.metrics_listen:  # empty: no endpoint (in-process tests)
            self.metrics_port = self._metrics_server.start()
        self.port = await self._grpc.start()
        self.metrics.redis_up.set(1)
        if self.settings.redis_check_interval > 0:
            self._watcher = asyncio.create_task(
                self._watch_redis(self._redis, self.settings.redis_check_interval)
            )
        log.info(
            "auth service ready",
            extra={
                "port": self.port,
                "metrics_port": self.metrics_port,
                "signing": self.policy.signing.algorithm if self.policy.signing else "none",
                "keys": sorted(self.policy.keys.by_kid),
            },
        )
        return self.port

    async def _watch_redis(self, redis: Redis, interval: float) -> None:
        """Report the AuthService NOT_SERVING while Redis does not answer, SERVING again once
        it does. The overall status ("") is left alone: liveness is not Redis's business."""
        up = True
        while True:
            await asyncio.sleep(interval)
            try:
                async with translate_errors("health ping"):
                    await asyncio.wait_for(redis.ping(), timeout=max(1.0, 2 * interval))
                now_up = True
            except (BusUnavailable, TimeoutError):
                now_up = False
            if now_up != up:
                up = now_up
                self.metrics.redis_up.set(int(up))
                status = (
                    health_pb2.HealthCheckResponse.SERVING
                    if up
                    else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                await self.grpc.health.set(SERVICE_NAME, status)
                log.warning("redis %s", "reachable again" if up else "unreachable: not serving")

    async def stop(self) -> None:
        """Health NOT_SERVING, drain in-flight calls within the grace, close resources."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._grpc is not None:
            await self._grpc.stop(self.settings.shutdown_grace)
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        self._metrics_server.stop()
        log.info("auth service stopped")
