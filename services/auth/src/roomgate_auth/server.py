"""The gRPC shell of the auth service: ``AuthServicer`` only translates between protobuf and
the pure core (``roomgate_auth.tokens``) plus the Redis store; ``AuthServer`` owns every
long-lived resource (Redis client, gRPC server, metrics endpoint) from ``start`` to ``stop``.

Status codes: UNAUTHENTICATED with the bare reason as message (see ``errors.Reason``),
PERMISSION_DENIED without the admin credential, INVALID_ARGUMENT for bad requests,
FAILED_PRECONDITION when this instance cannot issue tokens, UNAVAILABLE when Redis is down,
RESOURCE_EXHAUSTED when this instance's Redis pool is busy (``BusBusy``).
No token or API key ever appears in a log line or a status message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
from grpc_health.v1 import health_pb2
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from roomgate.auth.v1 import auth_pb2, auth_pb2_grpc
from roomgate_common.errors import BusBusy, BusUnavailable
from roomgate_common.grpcserver import GrpcServer, is_admin
from roomgate_common.identity import Principal, PrincipalKind, is_valid_principal_id
from roomgate_common.metrics import MetricsServer
from roomgate_common.redis_adapter import Redis, connect, translate_errors

from roomgate_auth.errors import AuthError, CannotIssue, InvalidRequest, Reason
from roomgate_auth.settings import AuthSettings
from roomgate_auth.store import AuthStore
from roomgate_auth.tokens import TokenPolicy, api_key_digest, is_api_key_digest

if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Any, Any]

log = logging.getLogger(__name__)

SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
METRICS_PREFIX = "roomgate_auth"

_KIND_TO_PROTO = {
    PrincipalKind.USER: auth_pb2.PRINCIPAL_KIND_USER,
    PrincipalKind.AGENT: auth_pb2.PRINCIPAL_KIND_AGENT,
    PrincipalKind.SERVICE: auth_pb2.PRINCIPAL_KIND_SERVICE,
}
_KIND_FROM_PROTO = {v: k for k, v in _KIND_TO_PROTO.items()}


def principal_to_proto(principal: Principal) -> auth_pb2.Principal:
    return auth_pb2.Principal(
        kind=_KIND_TO_PROTO[principal.kind],
        id=principal.id,
        session_id=principal.session_id,
        roles=principal.roles,
        permissions=principal.permissions,
        group_ids=principal.group_ids,
        team_ids=principal.team_ids,
        expires_at=principal.expires_at,
        token_id=principal.token_id,
        issued_at=int(principal.issued_at),
    )


def principal_from_proto(message: auth_pb2.Principal) -> Principal:
    """The identity a request names (token facts ignored); ``InvalidRequest`` when invalid."""
    kind = _KIND_FROM_PROTO.get(message.kind)
    if kind is None:
        raise InvalidRequest("principal.kind is required")
    principal = Principal(
        kind=kind,
        id=message.id,
        session_id=message.session_id,
        roles=tuple(message.roles),
        permissions=tuple(message.permissions),
        group_ids=tuple(message.group_ids),
        team_ids=tuple(message.team_ids),
    )
    problems = principal.problems()
    if problems:
        raise InvalidRequest("principal: " + "; ".join(problems))
    return principal


class AuthMetrics:
    """The service's own figures (the gRPC interceptor adds per-method counts)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.authentications = Counter(
            f"{METRICS_PREFIX}_authentications",
            "Authenticate calls by outcome (ok, rejected, unavailable) and rejection reason",
            ["outcome", "reason"],
            registry=registry,
        )
        self.latency = Histogram(
            f"{METRICS_PREFIX}_authenticate_seconds",
            "Time to verify a token and check its revocation",
            registry=registry,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1),
        )
        self.redis_up = Gauge(
            f"{METRICS_PREFIX}_redis_up",
            "1 while the last Redis health ping succeeded",
            registry=registry,
        )
        self.issued = Counter(
            f"{METRICS_PREFIX}_tokens_issued",
            "Tokens issued, by principal kind and path (admin, api_key, refresh)",
            ["kind", "via"],
            registry=registry,
        )
        self.revocations = Counter(
            f"{METRICS_PREFIX}_revocations",
            "Revocations by scope (token, principal, api_key)",
            ["scope"],
            registry=registry,
        )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    """roomgate.auth.v1.AuthService over a token policy and a store."""

    def __init__(
        self,
        policy: TokenPolicy,
        store: AuthStore,
        admin_secret: str,
        metrics: AuthMetrics,
        service_keys: dict[str, Principal] | None = None,
    ) -> None:
        self._service_keys = service_keys or {}
        self._policy = policy
        self._store = store
        self._admin_secret = admin_secret
        self._metrics = metrics

    async def _principal_of(self, token: str) -> Principal:
        """Verified and not revoked, or AuthError."""
        principal = self._policy.verify(token)
        if await self._store.is_revoked(principal):
            raise AuthError(Reason.REVOKED)
        return principal

    async def Authenticate(
        self, request: auth_pb2.AuthenticateRequest, context: Context
    ) -> auth_pb2.AuthenticateResponse:
        start = time.perf_counter()
        outcome, reason = "ok", ""
        try:
            principal = await self._principal_of(request.token)
        except AuthError as exc:
            outcome, reason = "rejected", exc.reason.value
            log.debug("token rejected", extra={"reason": reason})
            await _reject(context, exc)
        except (BusUnavailable, BusBusy) as exc:
            outcome = "unavailable"
            await _unavailable(context, exc)
        finally:
            self._metrics.latency.observe(time.perf_counter() - start)
            self._metrics.authentications.labels(outcome, reason).inc()
        return auth_pb2.AuthenticateResponse(principal=principal_to_proto(principal))

    async def IssueToken(
        self, request: auth_pb2.IssueTokenRequest, context: Context
    ) -> auth_pb2.IssueTokenResponse:
        try:
            if request.api_key:
                via = "api_key"
                keyed = self._service_keys.get(
                    api_key_digest(request.api_key)
                ) or await self._store.api_key_principal(request.api_key)
                if keyed is None:
                    log.info("unknown api key presented")
                    raise AuthError(Reason.UNKNOWN_KEY)
                # A fresh session every time: the caller never names it (a chosen id would
                # be another user's `session-{sid}` room).
                principal = replace(keyed, session_id="")
            else:
                via = "admin"
                await self._require_admin(context)
                principal = principal_from_proto(request.principal)
            token, issued = self._policy.mint(principal, request.ttl_seconds)
        except AuthError as exc:
            await _reject(context, exc)
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except CannotIssue as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except (BusUnavailable, BusBusy) as exc:
            await _unavailable(context, exc)
        self._metrics.issued.labels(issued.kind.value, via).inc()
        log.info(
            "token issued",
            extra={"kind": issued.kind.value, "id": issued.id, "via": via, "jti": issued.token_id},
        )
        return auth_pb2.IssueTokenResponse(token=token, principal=principal_to_proto(issued))

    async def RefreshToken(
        self, request: auth_pb2.RefreshTokenRequest, context: Context
    ) -> auth_pb2.RefreshTokenResponse:
        try:
            principal = await self._principal_of(request.token)
            token, issued = self._policy.mint(principal, request.ttl_seconds)
        except AuthError as exc:
            await _reject(context, exc)
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except CannotIssue as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except (BusUnavailable, BusBusy) as exc:
            await _unavailable(context, exc)
        self._metrics.issued.labels(issued.kind.value, "refresh").inc()
        return auth_pb2.RefreshTokenResponse(token=token, principal=principal_to_proto(issued))

    async def RevokeToken(
        self, request: auth_pb2.RevokeTokenRequest, context: Context
    ) -> auth_pb2.RevokeTokenResponse:
        """Whoever holds a valid token may revoke it; an expired token needs nothing."""
        try:
            principal = self._policy.verify(request.token)
            await self._store.revoke_token(principal)
        except AuthError as exc:
            if exc.reason is not Reason.EXPIRED:
                await _reject(context, exc)
            return auth_pb2.RevokeTokenResponse()
        except (BusUnavailable, BusBusy) as exc:
            await _unavailable(context, exc)
        self._metrics.revocations.labels("token").inc()
        log.info(
            "token revoked",
            extra={"kind": principal.kind.value, "id": principal.id, "jti": principal.token_id},
        )
        return auth_pb2.RevokeTokenResponse()

    async def RevokeAll(
        self, request: auth_pb2.RevokeAllRequest, context: Context
    ) -> auth_pb2.RevokeAllResponse:
        await self._require_admin(context)
        kind = _KIND_FROM_PROTO.get(request.kind)
        if kind is None or not is_valid_principal_id(kind, request.id):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a valid kind and id needed")
        try:
            await self._store.revoke_all(kind, request.id)
        except (BusUnavailable, BusBusy) as exc:
            await _unavailable(context, exc)
        self._metrics.revocations.labels("principal").inc()
        log.info("principal revoked", extra={"kind": kind.value, "id": request.id})
        return auth_pb2.RevokeAllResponse()

    async def CreateApiKey(
        self, request: auth_pb2.CreateApiKeyRequest, context: Context
    ) -> auth_pb2.CreateApiKeyResponse:
        await self._require_admin(context)
        try:
            agent = principal_from_proto(request.principal)
            if agent.kind is not PrincipalKind.AGENT:
                raise InvalidRequest("API keys stand for agents only")
            api_key, key_id = await self._store.create_api_key(replace(agent, session_id=""))
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (BusUnavailable, BusBusy) as exc:
            await _unavailable(context, exc)
        log.info("api key created", extra={"id": agent.id, "key_id": key_id})
        return auth_pb2.CreateApiKeyResponse(api_key=api_key, key_id=key_id)

    async def RevokeApiKey(
        self, request: auth_pb2.RevokeApiKeyRequest, context: Context
    ) -> auth_pb2.RevokeApiKeyResponse:
        await self._require_admin(context)
        key_id = api_key_digest(request.api_key) if request.api_key else request.key_id
        if not is_api_key_digest(key_id):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "api_key or key_id needed")
        try:
            deleted = await self._store.delete_api_key(key_id)
        except (BusUnavailable, BusBusy) as exc:
            await _unavailable(context, exc)
        if not deleted:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such api key")
        self._metrics.revocations.labels("api_key").inc()
        log.info("api key revoked", extra={"key_id": key_id})
        return auth_pb2.RevokeApiKeyResponse()

    async def _require_admin(self, context: Context) -> None:
        if not is_admin(context, self._admin_secret):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "admin credential required")


async def _reject(context: Context, exc: AuthError) -> NoReturn:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.reason.value)
    raise AssertionError("unreachable")  # abort raises


async def _unavailable(context: Context, exc: BusUnavailable | BusBusy) -> NoReturn:
    if isinstance(exc, BusBusy):  # this instance is overloaded; Redis is fine
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "auth busy, retry")
    await context.abort(grpc.StatusCode.UNAVAILABLE, "token state store unavailable")
    raise AssertionError("unreachable")


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
        )
        self._grpc = GrpcServer(
            self.settings.listen,
            service_names=[SERVICE_NAME],
            register=lambda server: auth_pb2_grpc.add_AuthServiceServicer_to_server(  # type: ignore[no-untyped-call]
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
