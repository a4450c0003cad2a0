"""The gRPC server shell every Roomgate gRPC service runs in: ``grpc.aio`` with the stock
health service (NOT_SERVING until started and while draining), reflection, one interceptor
per concern (traces, metrics), and graceful shutdown."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry, Counter, Histogram

from roomgate_common.bearer import bearer_token as parse_bearer
from roomgate_common.telemetry import grpc_server_interceptor

log = logging.getLogger(__name__)

# grpc-stubs' generics, for annotations (grpc's classes are not subscriptable at run time).
# AioBehaviour is a unary-unary handler of a grpc.aio server: a coroutine function of the
# aio context (the stubs type RpcMethodHandler.unary_unary for the sync server only).
if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
    Interceptor = grpc.aio.ServerInterceptor[Any, Any]
    AioBehaviour = Callable[[Any, Context], Awaitable[Any]]
else:
    Interceptor = grpc.aio.ServerInterceptor


class MetricsInterceptor(Interceptor):
    """Counts every RPC by method and status code and times it."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.requests = Counter(
            f"{prefix}_grpc_requests",
            "gRPC requests handled, by method and status code",
            ["method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            f"{prefix}_grpc_request_seconds",
            "gRPC request latency by method",
            ["method"],
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        inner = cast("AioBehaviour", handler.unary_unary)
        requests, latency = self.requests, self.latency

        async def timed(request: Any, context: Context) -> Any:
            start = time.perf_counter()
            code = "OK"
            try:
                return await inner(request, context)
            except grpc.aio.AbortError:
                code = context.code().name if context.code() else "UNKNOWN"
                raise
            except Exception:
                code = "INTERNAL"
                raise
            finally:
                latency.labels(method).observe(time.perf_counter() - start)
                requests.labels(method, code).inc()

        return grpc.unary_unary_rpc_method_handler(
            timed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class GrpcServer:
    """A started-and-stopped ``grpc.aio`` server for one Roomgate service.

    ``register`` adds the service's servicers; ``service_names`` are the full names
    (``roomgate.auth.v1.AuthService``) reported by health and reflection.
    """

    def __init__(
        self,
        listen: str,
        *,
        service_names: Iterable[str],
        register: Callable[[grpc.aio.Server], None],
        registry: CollectorRegistry,
        metrics_prefix: str,
        tracer_provider: TracerProvider | None = None,
        interceptors: Iterable[Interceptor] = (),
    ) -> None:
        self._listen = listen
        self._names = list(service_names)
        # grpc_health's stubs have only the sync servicer; health.aio.HealthServicer has the
        # same methods as coroutines.
        self.health: Any = health.aio.HealthServicer()  # type: ignore[attr-defined]
        # Outermost first: traces, metrics (which then count refusals), the service's own
        # (e.g. caller authentication).
        chain: list[Interceptor] = [
            MetricsInterceptor(registry, metrics_prefix),
            *interceptors,
        ]
        if tracer_provider is not None:
            chain.insert(0, grpc_server_interceptor(tracer_provider))
        self.server = grpc.aio.server(
            interceptors=chain,
            options=[
                ("grpc.max_receive_message_length", 1 << 20),
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.so_reuseport", 0),
            ],
        )
        register(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*self._names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        self.port = 0

    async def start(self) -> int:
        for name in ["", *self._names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.port = self.server.add_insecure_port(self._listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {self._listen}")
        await self.server.start()
        for name in ["", *self._names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("grpc listening", extra={"listen": self._listen, "port": self.port})
        return self.port

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, refuse new calls, let in-flight calls finish within ``grace``."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


def bearer_token(context: Context) -> str:
    """The token of the ``authorization: Bearer ...`` call metadata ('' when absent)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            return parse_bearer(value)
    return ""


def is_admin(context: Context, admin_secret: str) -> bool:
    """True when the caller presented the admin credential (constant-time comparison)."""
    presented = bearer_token(context)
    return bool(admin_secret) and hmac.compare_digest(presented.encode(), admin_secret.encode())
