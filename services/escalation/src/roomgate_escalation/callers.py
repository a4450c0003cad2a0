"""Who may call the escalation service: every EscalationService call carries a service token
(``authorization: Bearer <token>`` metadata) that the auth service verifies, of a service
principal holding ``ROOMGATE_ESCALATION_PERMISSION`` — the same check the gateway's publish
API makes. One interceptor does it before any handler runs; the handler reads the verified
caller with ``current_caller()`` (the timeline's ``by``).

UNAUTHENTICATED: no token, or auth refused it. PERMISSION_DENIED: not a service principal,
or without the permission. UNAVAILABLE: auth did not answer. Health and reflection stay open
(probes). Verified tokens are remembered for ``cache_seconds`` (at most until they expire).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import grpc
from roomgate.auth.v1 import auth_pb2, auth_pb2_grpc
from roomgate_common.credentials import CredentialCache
from roomgate_common.grpcserver import Interceptor, bearer_token

from roomgate_escalation.errors import EscalationError

if TYPE_CHECKING:
    from roomgate_common.grpcserver import AioBehaviour, Context, Handler

SERVICE_PREFIX = "/roomgate.escalation.v1.EscalationService/"
MAX_TOKEN_BYTES = 8192
_CACHE_ENTRIES = 1024


@dataclass(frozen=True, slots=True)
class Caller:
    id: str
    permissions: tuple[str, ...]
    # What roomgate_common.credentials keeps the verified token by
    token_id: str = ""
    issued_at: int = 0
    expires_at: int = 0


_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "escalation_caller", default=None
)


def current_caller() -> Caller | None:
    """The verified caller of the call being handled (None outside a call)."""
    return _caller.get()


class _Refused(EscalationError):
    """A caller's token is refused: the call is aborted with ``code`` (never escapes)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class CallerAuthInterceptor(Interceptor):
    """Verifies the service token of every EscalationService call with the auth service."""

    def __init__(
        self,
        auth_addr: str,
        *,
        permission: str,
        timeout: float,
        cache_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._channel = grpc.aio.insecure_channel(auth_addr)
        self._stub = auth_pb2_grpc.AuthServiceStub(self._channel)
        self._permission = permission
        self._timeout = timeout
        self._cache: CredentialCache[Caller] = CredentialCache(
            cache_seconds, _CACHE_ENTRIES, kind_of=lambda _caller: "service", clock=clock
        )

    async def close(self) -> None:
        await self._channel.close(grace=None)  # grpc-stubs make grace required; it is not

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if (
            handler is None
            or handler.unary_unary is None
            or not handler_call_details.method.startswith(SERVICE_PREFIX)
        ):
            return handler
        inner = cast("AioBehaviour", handler.unary_unary)

        async def checked(request: Any, context: Context) -> Any:
            try:
                caller = await self._verify(bearer_token(context))
            except _Refused as exc:
                await context.abort(exc.code, exc.message)
            token = _caller.set(caller)
            try:
                return await inner(request, context)
            finally:
                _caller.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            checked,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def _verify(self, token: str) -> Caller:
        if not token:
            raise _Refused(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token")
        if len(token) > MAX_TOKEN_BYTES:
            raise _Refused(grpc.StatusCode.UNAUTHENTICATED, "malformed")
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        try:
            reply = await self._stub.Authenticate(
                auth_pb2.AuthenticateRequest(token=token), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise _Refused(exc.code(), exc.details() or "unauthenticated") from None
            raise _Refused(grpc.StatusCode.UNAVAILABLE, "auth unavailable") from None
        principal = reply.principal
        if (
            principal.kind != auth_pb2.PRINCIPAL_KIND_SERVICE
            or self._permission not in principal.permissions
        ):
            raise _Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"a service token with the {self._permission} permission is required",
            )
        caller = Caller(
            id=principal.id,
            permissions=tuple(principal.permissions),
            token_id=principal.token_id,
            issued_at=principal.issued_at,
            expires_at=principal.expires_at,
        )
        self._cache.put(token, caller)
        return caller
