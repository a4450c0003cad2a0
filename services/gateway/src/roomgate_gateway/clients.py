"""The gateway's seams to its gRPC peers (auth, roomauthz). gRPC errors are translated here:
callers see ``AuthRejected`` (with the auth service's reason) or ``PeerUnavailable``."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import context as otel_context
from opentelemetry.trace import Tracer
from roomgate.auth.v1 import auth_pb2, auth_pb2_grpc
from roomgate.roomauthz.v1 import roomauthz_pb2, roomauthz_pb2_grpc
from roomgate_common.telemetry import grpc_client_interceptors

from roomgate_gateway.breaker import CircuitBreaker
from roomgate_gateway.errors import GatewayError
from roomgate_gateway.readiness import LastAnswer


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a connection is: a compact copy of the auth service's ``Principal`` message.

    Holding the protobuf message itself would keep its whole arena alive for the life of
    the connection; ``raw`` (its serialised form, ~100 bytes) rebuilds it for roomauthz.
    """

    kind: int
    id: str
    session_id: str
    token_id: str
    expires_at: int
    issued_at: int
    roles: tuple[str, ...]
    permissions: tuple[str, ...]
    group_ids: tuple[str, ...]
    team_ids: tuple[str, ...]
    raw: bytes

    @classmethod
    def from_proto(cls, message: auth_pb2.Principal) -> Principal:
        return cls(
            kind=message.kind,
            id=message.id,
            session_id=message.session_id,
            token_id=message.token_id,
            expires_at=message.expires_at,
            issued_at=message.issued_at,
            roles=tuple(message.roles),
            permissions=tuple(message.permissions),
            group_ids=tuple(message.group_ids),
            team_ids=tuple(message.team_ids),
            raw=message.SerializeToString(),
        )

    def to_proto(self) -> auth_pb2.Principal:
        return auth_pb2.Principal.FromString(self.raw)


KIND_NAMES: dict[int, str] = {
    auth_pb2.PRINCIPAL_KIND_USER: "user",
    auth_pb2.PRINCIPAL_KIND_AGENT: "agent",
    auth_pb2.PRINCIPAL_KIND_SERVICE: "service",
}

ACTIONS = {
    "subscribe": roomauthz_pb2.ACTION_SUBSCRIBE,
    "publish": roomauthz_pb2.ACTION_PUBLISH,
}

# The auth service cannot be reached or did not answer in time: the only failures the
# breaker counts. Any other status is an answer about this one request (a client can cause
# RESOURCE_EXHAUSTED, INVALID_ARGUMENT, even INTERNAL with what it sends), and one client
# must not open the circuit for everybody.
_UNREACHABLE_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
# The auth service is there but could not answer this request: try again later (1013).
_NO_ANSWER_CODES = {
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}


class AuthRejected(GatewayError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PeerUnavailable(GatewayError):
    pass


def _channel(addr: str, tracer: Tracer | None) -> grpc.aio.Channel:
    """A channel whose calls are CLIENT spans carrying the caller's trace to the peer."""
    return grpc.aio.insecure_channel(
        addr,
        interceptors=grpc_client_interceptors(tracer),
        options=[
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.lb_policy_name", "round_robin"),
            ("grpc.enable_retries", 1),
        ],
    )


class AuthClient:
    """Authenticate tokens; protected by a circuit breaker (open -> fail fast, 1013).

    A token longer than ``max_token_bytes`` (the auth service's own limit) is refused here,
    before any call: every path that authenticates (WebSocket, SSE, the publish API)
    comes through ``authenticate``.

    Tokens asked for while ``calls_in_flight`` calls are on their way (or in the same
    event-loop turn) go together in one ``AuthenticateBatch`` call of at most ``batch_max``
    (keep it <= the auth service's ``ROOMGATE_MAX_BATCH``): a reconnect storm costs auth one
    call and one Redis round trip per batch, not per connect, and a lone connect still goes
    at once (a batch of one, launched in the next loop iteration, no timer). The breaker
    counts one success or failure per call. A batch joins the trace of its first request.
    At most ``max_waiting`` tokens wait for a call; a token beyond them fails at once as
    unavailable (1013 for a connect, 503 for a publish). An auth
    service without AuthenticateBatch (UNIMPLEMENTED: older, mid-upgrade) gets every token
    from then on as a unary Authenticate call."""

    def __init__(
        self,
        addr: str,
        *,
        timeout: float,
        breaker_failures: int,
        breaker_recovery: float,
        max_token_bytes: int = 8192,
        batch_max: int = 100,
        calls_in_flight: int = 4,
        max_waiting: int = 1000,
        ready_grace: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        tracer: Tracer | None = None,
    ) -> None:
        self._channel = _channel(addr, tracer)
        self._stub = auth_pb2_grpc.AuthServiceStub(self._channel)
        # Its last good answer (a call's or a health check's), for /readyz (readiness.py)
        self.answers = LastAnswer(grace=ready_grace, clock=clock)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._timeout = timeout
        self._max_token_bytes = max_token_bytes
        self._batch_max = batch_max
        self._calls_in_flight = calls_in_flight
        self._max_waiting = max_waiting
        self.breaker = CircuitBreaker(
            failure_threshold=breaker_failures, recovery_timeout=breaker_recovery, clock=clock
        )
        # (token, its caller's future, the caller's context: a batch's call runs in the
        # context of its first request, so it joins that request's trace)
        self._waiting: list[tuple[str, asyncio.Future[Principal], contextvars.Context]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._launching = False
        self._unary_only = False  # the auth service answered UNIMPLEMENTED to a batch

    async def authenticate(self, token: str) -> Principal:
        # characters first (never more than bytes): a huge token is not encoded at all
        if (
            len(token) > self._max_token_bytes
            or len(token.encode("utf-8", "surrogatepass")) > self._max_token_bytes
        ):
            raise AuthRejected("malformed")
        if not self.breaker.allow():
            raise PeerUnavailable("auth circuit open")
        if len(self._waiting) >= self._max_waiting:
            raise PeerUnavailable("auth: too many tokens waiting")
        future: asyncio.Future[Principal] = asyncio.get_running_loop().create_future()
        self._waiting.append((token, future, contextvars.copy_context()))
        self._launch_soon()
        return await future

    def _answered(self) -> None:
        """Auth answered a call (whatever it said): the breaker's success, and a good
        answer for /readyz."""
        self.breaker.success()
        self.answers.answered(True)

    def _launch_soon(self) -> None:
        if not self._launching and len(self._in_flight) < self._calls_in_flight:
            self._launching = True
            asyncio.get_running_loop().call_soon(self._launch)

    def _launch(self) -> None:
        self._launching = False
        loop = asyncio.get_running_loop()
        # A caller that gave up (connect deadline, closed socket) is still sent: its answer
        # is dropped, and the breaker's half-open trial always gets its call.
        while self._waiting and len(self._in_flight) < self._calls_in_flight:
            batch = self._waiting[: self._batch_max]
            del self._waiting[: self._batch_max]
            call = loop.create_task(self._call(batch), context=batch[0][2])
            self._in_flight.add(call)
            call.add_done_callback(self._call_done)

    def _call_done(self, call: asyncio.Task[None]) -> None:
        self._in_flight.discard(call)
        if self._waiting:
            self._launch_soon()

    async def _call(
        self, batch: list[tuple[str, asyncio.Future[Principal], contextvars.Context]]
    ) -> None:
        if self._unary_only:
            await asyncio.gather(*(self._unary(token, future) for token, future, _ in batch))
            return
        try:
            reply = await self._stub.AuthenticateBatch(
                auth_pb2.AuthenticateBatchRequest(tokens=[token for token, _, _ in batch]),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code in _UNREACHABLE_CODES:
                self.breaker.failure()
            elif code == grpc.StatusCode.UNIMPLEMENTED:
                self._unary_only = True
                await asyncio.gather(*(self._unary(token, future) for token, future, _ in batch))
                return
            else:  # it answered (RESOURCE_EXHAUSTED, INVALID_ARGUMENT: batch_max too big, ...)
                self._answered()
            self._fail(batch, f"auth: {code.name}")
            return
        except asyncio.CancelledError:  # shutdown: nobody waits forever
            self._fail(batch, "auth: call cancelled")
            raise
        except Exception as exc:  # e.g. the channel closed: the callers get the failure
            self._fail(batch, f"auth: {type(exc).__name__}")
            return
        self._answered()
        if len(reply.results) != len(batch):
            self._fail(batch, "auth: answer does not match the batch")
            return
        for (_token, future, _), result in zip(batch, reply.results, strict=True):
            if future.done():  # a caller that gave up cancelled its future
                continue
            if result.WhichOneof("result") == "principal":
                future.set_result(Principal.from_proto(result.principal))
            else:
                future.set_exception(AuthRejected(result.rejected or "unauthenticated"))

    async def _unary(self, token: str, future: asyncio.Future[Principal]) -> None:
        """One token by the unary Authenticate (an auth service without AuthenticateBatch)."""
        try:
            reply = await self._stub.Authenticate(
                auth_pb2.AuthenticateRequest(token=token), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code in _UNREACHABLE_CODES:
                self.breaker.failure()
                error: GatewayError = PeerUnavailable(f"auth: {code.name}")
            else:
                self._answered()
                if code == grpc.StatusCode.UNAUTHENTICATED:
                    error = AuthRejected(exc.details() or "unauthenticated")
                elif code in _NO_ANSWER_CODES:
                    error = PeerUnavailable(f"auth: {code.name}")
                else:
                    error = AuthRejected("malformed")
            if not future.done():
                future.set_exception(error)
            return
        except asyncio.CancelledError:
            if not future.done():
                future.set_exception(PeerUnavailable("auth: call cancelled"))
            raise
        except Exception as exc:
            if not future.done():
                future.set_exception(PeerUnavailable(f"auth: {type(exc).__name__}"))
            return
        self._answered()
        if not future.done():
            future.set_result(Principal.from_proto(reply.principal))

    @staticmethod
    def _fail(
        batch: list[tuple[str, asyncio.Future[Principal], contextvars.Context]], why: str
    ) -> None:
        for _token, future, _ in batch:
            if not future.done():
                future.set_exception(PeerUnavailable(why))

    async def ready(self, within: float) -> bool:
        """The auth service answers its health check with SERVING; a check without an
        answer ``within`` seconds (auth busy, e.g. verifying a reconnect storm) counts as
        its last good answer, for the grace (``readiness.LastAnswer``)."""
        try:
            reply = await self._health.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=min(within, self._timeout)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return self.answers.timed_out()
            return self.answers.answered(False)
        return self.answers.answered(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        await self._channel.close(grace=None)


@dataclass(frozen=True, slots=True)
class Decision:
    room: str
    allowed: bool
    reason: str


class RoomAuthzClient:
    """Room decisions from roomauthz. Decisions asked for while ``calls_in_flight`` calls
    are on their way (or in the same event-loop turn) go together in one
    ``AuthorizeBatch`` call of at most ``batch_max``: a burst of subscribes (thousands of
    clients reconnecting) costs roomauthz one call and one ACL read per batch, not per
    subscribe, and a lone subscribe still goes at once."""

    def __init__(
        self,
        addr: str,
        *,
        timeout: float,
        batch_max: int = 500,
        calls_in_flight: int = 4,
        tracer: Tracer | None = None,
    ) -> None:
        self._channel = _channel(addr, tracer)
        self._stub = roomauthz_pb2_grpc.RoomAuthzServiceStub(self._channel)
        self._timeout = timeout
        self._batch_max = batch_max
        self._calls_in_flight = calls_in_flight
        self._waiting: list[tuple[roomauthz_pb2.AuthorizeRequest, asyncio.Future[Decision]]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._launching = False

    async def authorize(
        self,
        principal: Principal,
        room: str,
        action: str,
        message_type: str = "",
        parent: otel_context.Context | None = None,
    ) -> Decision:
        """``parent``: the trace context the call joins when this request starts a batch
        (default: the current one; a batch joins the trace of the request that started it)."""
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        request = roomauthz_pb2.AuthorizeRequest(
            principal=principal.to_proto(),
            room=room,
            action=ACTIONS[action],
            message_type=message_type,
        )
        self._waiting.append((request, future))
        self._launch_soon(parent)
        return await future

    def _launch_soon(self, parent: otel_context.Context | None = None) -> None:
        if not self._launching and len(self._in_flight) < self._calls_in_flight:
            self._launching = True
            context = None
            if parent is not None:  # the call task is created in the callback's context
                context = contextvars.copy_context()
                context.run(otel_context.attach, parent)
            asyncio.get_running_loop().call_soon(self._launch, context=context)

    def _launch(self) -> None:
        self._launching = False
        loop = asyncio.get_running_loop()
        while self._waiting and len(self._in_flight) < self._calls_in_flight:
            batch = self._waiting[: self._batch_max]
            del self._waiting[: self._batch_max]
            call = loop.create_task(self._call(batch))
            self._in_flight.add(call)
            call.add_done_callback(self._call_done)

    def _call_done(self, call: asyncio.Task[None]) -> None:
        self._in_flight.discard(call)
        if self._waiting:
            self._launch_soon()

    async def _call(
        self, batch: list[tuple[roomauthz_pb2.AuthorizeRequest, asyncio.Future[Decision]]]
    ) -> None:
        try:
            reply = await self._stub.AuthorizeBatch(
                roomauthz_pb2.AuthorizeBatchRequest(requests=[request for request, _ in batch]),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            _fail(batch, f"roomauthz: {exc.code().name}")
        except BaseException:  # cancelled (shutdown): nobody waits forever
            _fail(batch, "roomauthz: call cancelled")
            raise
        else:
            for (request, future), d in zip(batch, reply.decisions, strict=True):
                if not future.done():  # a caller that gave up cancelled its future
                    future.set_result(
                        Decision(room=request.room, allowed=d.allowed, reason=d.reason)
                    )

    async def authorize_many(
        self, principal: Principal, rooms: Sequence[str], action: str
    ) -> list[Decision]:
        try:
            reply = await self._stub.AuthorizeMany(
                roomauthz_pb2.AuthorizeManyRequest(
                    principal=principal.to_proto(),
                    items=[roomauthz_pb2.RoomAction(room=r, action=ACTIONS[action]) for r in rooms],
                ),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise PeerUnavailable(f"roomauthz: {exc.code().name}") from None
        return [
            Decision(room=r, allowed=d.allowed, reason=d.reason)
            for r, d in zip(rooms, reply.decisions, strict=True)
        ]

    async def close(self) -> None:
        await self._channel.close(grace=None)


def _fail(batch: list[tuple[Any, asyncio.Future[Decision]]], why: str) -> None:
    for _request, future in batch:
        if not future.done():
            future.set_exception(PeerUnavailable(why))


class AlertCommandRefused(GatewayError):
    """The escalation service refused an acknowledge/resolve (``code`` is an ErrorCode value)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class EscalationClient:
    """Acknowledge / resolve alerts on behalf of a user: the escalation service owns the
    alert's lifecycle and publishes the canonical ``alert_acknowledged``/``alert_resolved``."""

    def __init__(self, addr: str, *, timeout: float, tracer: Tracer | None = None) -> None:
        from roomgate.escalation.v1 import escalation_pb2, escalation_pb2_grpc

        self._pb = escalation_pb2
        self._channel = _channel(addr, tracer)
        self._stub = escalation_pb2_grpc.EscalationServiceStub(self._channel)
        self._timeout = timeout
        self._credential: Callable[[], Awaitable[str]] | None = None

    def use_credential(self, credential: Callable[[], Awaitable[str]]) -> None:
        """Every call carries ``authorization: Bearer <await credential()>`` (the gateway's
        service token: escalation refuses calls without one)."""
        self._credential = credential

    async def command(self, type_: str, alert_id: str, by: str) -> bool:
        """Run ``alert_acknowledged``/``alert_resolved``; True when the alert changed."""
        metadata = (
            (("authorization", f"Bearer {await self._credential()}"),) if self._credential else ()
        )
        try:
            if type_ == "alert_acknowledged":
                reply = await self._stub.Acknowledge(
                    self._pb.AcknowledgeRequest(alert_id=alert_id, by=by),
                    timeout=self._timeout,
                    metadata=metadata,
                )
            else:
                reply = await self._stub.Resolve(
                    self._pb.ResolveRequest(alert_id=alert_id, by=by),
                    timeout=self._timeout,
                    metadata=metadata,
                )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise AlertCommandRefused("not_found", "unknown alert") from None
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise AlertCommandRefused("invalid_message", exc.details() or "invalid") from None
            raise PeerUnavailable(f"escalation: {exc.code().name}") from None
        return bool(reply.changed)

    async def close(self) -> None:
        await self._channel.close(grace=None)
