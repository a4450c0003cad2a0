"""The gRPC shell of the auth service: ``AuthServicer`` only translates between protobuf and
the pure core (``roomgate_auth.tokens``) plus the Redis store (``roomgate_auth.store``).
``roomgate_auth.server.AuthServer`` runs it.

Status codes: UNAUTHENTICATED with the bare reason as message (see ``errors.Reason``),
PERMISSION_DENIED without the admin credential, INVALID_ARGUMENT for bad requests,
FAILED_PRECONDITION when this instance cannot issue tokens, UNAVAILABLE when Redis is down,
RESOURCE_EXHAUSTED when this instance's Redis pool is busy (``BusBusy``).
No token or API key ever appears in a log line or a status message.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from roomgate.auth.v1 import auth_pb2, auth_pb2_grpc
from roomgate_common.errors import BusBusy, BusUnavailable
from roomgate_common.grpcserver import is_admin
from roomgate_common.identity import Principal, PrincipalKind, is_valid_principal_id

from roomgate_auth.errors import AuthError, CannotIssue, InvalidRequest, Reason
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
            "Tokens authenticated (Authenticate calls and each token of an AuthenticateBatch)"
            " by outcome (ok, rejected, unavailable) and rejection reason",
            ["outcome", "reason"],
            registry=registry,
        )
        self.latency = Histogram(
            f"{METRICS_PREFIX}_authenticate_seconds",
            "Time to verify a token and check its revocation (a batched token: its batch's)",
            registry=registry,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1),
        )
        self.batch_latency = Histogram(
            f"{METRICS_PREFIX}_authenticate_batch_seconds",
            "Time to verify an AuthenticateBatch call's tokens and check their revocation",
            registry=registry,
            buckets=(0.00025, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.batch_tokens = Histogram(
            f"{METRICS_PREFIX}_authenticate_batch_tokens",
            "Tokens per AuthenticateBatch call",
            registry=registry,
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
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
        *,
        max_batch: int = 1000,
    ) -> None:
        self._service_keys = service_keys or {}
        self._max_batch = max_batch
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

    async def _verdicts(self, tokens: Sequence[str]) -> list[Principal | Reason]:
        """Each token's principal or rejection reason, in order, counted by outcome in
        ``authentications``: every token verified by the pure core, then one Redis pipeline
        for the revocation checks of those that pass (none when none pass). Redis down or
        busy: every token counted ``unavailable`` and ``BusUnavailable`` / ``BusBusy``
        raised."""
        verdicts: list[Principal | Reason] = []
        for token in tokens:
            try:
                verdicts.append(self._policy.verify(token))
            except AuthError as exc:
                verdicts.append(exc.reason)
        try:
            revoked = iter(
                await self._store.are_revoked([v for v in verdicts if isinstance(v, Principal)])
            )
        except (BusUnavailable, BusBusy):
            self._metrics.authentications.labels("unavailable", "").inc(len(tokens))
            raise
        verdicts = [
            Reason.REVOKED if isinstance(v, Principal) and next(revoked) else v for v in verdicts
        ]
        outcomes = collections.Counter(
            ("ok", "") if isinstance(v, Principal) else ("rejected", v.value) for v in verdicts
        )
        for (outcome, reason), count in outcomes.items():
            self._metrics.authentications.labels(outcome, reason).inc(count)
        return verdicts

    async def Authenticate(
        self, request: auth_pb2.AuthenticateRequest, context: Context
    ) -> auth_pb2.AuthenticateResponse:
        """A batch of one (``_verdicts``), refused UNAUTHENTICATED with its reason."""
        start = time.perf_counter()
        try:
            (verdict,) = await self._verdicts([request.token])
        except (BusUnavailable, BusBusy) as exc:
            await _unavailable(context, exc)
        finally:
            self._metrics.latency.observe(time.perf_counter() - start)
        if isinstance(verdict, Reason):
            log.debug("token rejected", extra={"reason": verdict.value})
            await _reject(context, AuthError(verdict))
        return auth_pb2.AuthenticateResponse(principal=principal_to_proto(verdict))

    async def AuthenticateBatch(
        self, request: auth_pb2.AuthenticateBatchRequest, context: Context
    ) -> auth_pb2.AuthenticateBatchResponse:
        """Each token's verdict as ``Authenticate`` would give it (``_verdicts``). Redis
        down or busy fails the whole call, as it fails ``Authenticate``."""
        tokens = request.tokens
        if len(tokens) > self._max_batch:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"at most {self._max_batch} tokens per AuthenticateBatch, got {len(tokens)}",
            )
        start = time.perf_counter()
        try:
            verdicts = await self._verdicts(tokens)
        except (BusUnavailable, BusBusy) as exc:
            await _unavailable(context, exc)
        finally:
            elapsed = time.perf_counter() - start
            self._metrics.batch_latency.observe(elapsed)
            self._metrics.batch_tokens.observe(len(tokens))
            for _ in tokens:  # each token of the batch waited that long (the dashboard's)
                self._metrics.latency.observe(elapsed)
        return auth_pb2.AuthenticateBatchResponse(
            results=[
                auth_pb2.AuthenticateResult(rejected=v.value)
                if isinstance(v, Reason)
                else auth_pb2.AuthenticateResult(principal=principal_to_proto(v))
                for v in verdicts
            ]
        )

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
