"""The ASGI application: ``/ws`` (the protocol), ``POST /api/v1/publish`` (backends),
``/healthz``, ``/readyz``, ``/metrics``. The lifespan owns the Gateway and everything it
holds (Redis, gRPC channels, the bus subscriber)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

import msgspec
from opentelemetry.trace import Tracer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from roomgate_common.envelope import make_envelope
from roomgate_common.errors import BusUnavailable
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from roomgate_gateway.clients import KIND_NAMES, AuthRejected, PeerUnavailable, Principal
from roomgate_gateway.connection import Connection
from roomgate_gateway.gateway import Gateway
from roomgate_gateway.metrics import GatewayMetrics
from roomgate_gateway.protocol import EVENT_TYPES, RoomName, Str128
from roomgate_gateway.settings import GatewaySettings


class PublishMetadata(msgspec.Struct, omit_defaults=True):
    correlation_id: Str128 | None = None
    priority: Literal["high", "normal", "low"] = "normal"
    ttl: Annotated[int, msgspec.Meta(ge=0, le=7 * 86400)] | None = None


class PublishBody(msgspec.Struct):
    room: RoomName
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    metadata: PublishMetadata = msgspec.field(default_factory=PublishMetadata)
    requiresAck: bool = False


_publish_decoder = msgspec.json.Decoder(PublishBody)


class PublishError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


async def authorize_publisher(gw: Gateway, token: str, room: str, type_: str) -> Principal:
    """The service principal behind ``token``, allowed to publish ``type_`` into ``room``."""
    if not token:
        raise PublishError(401, "unauthorized", "missing bearer token")
    try:
        principal = await gw.authenticate(token)
    except AuthRejected as exc:
        raise PublishError(401, "unauthorized", exc.reason) from None
    except PeerUnavailable:
        raise PublishError(503, "unavailable", "auth unavailable") from None
    if (
        KIND_NAMES.get(principal.kind) != "service"
        or gw.settings.publish_permission not in principal.permissions
    ):
        raise PublishError(
            403, "permission_denied", "a service token with the publish permission is required"
        )
    try:
        decision = await gw.authz.authorize(principal, room, "publish", type_)
    except PeerUnavailable:
        raise PublishError(503, "unavailable", "roomauthz unavailable") from None
    if not decision.allowed:
        raise PublishError(403, "permission_denied", decision.reason)
    return principal


async def publish_event(
    gw: Gateway, principal: Principal, body: PublishBody, sender: str | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"priority": body.metadata.priority}
    if body.metadata.ttl:
        metadata["ttl"] = body.metadata.ttl
    if body.metadata.correlation_id:
        metadata["correlation_id"] = body.metadata.correlation_id
    if body.requiresAck:
        metadata["requiresAck"] = True
    from roomgate_common.telemetry import inject_trace

    inject_trace(metadata)
    envelope = make_envelope(
        body.type, sender=sender or principal.id, room=body.room, data=body.data, metadata=metadata
    )
    try:
        published = await gw.publisher.publish_envelope(envelope)
    except BusUnavailable:
        raise PublishError(503, "unavailable", "bus unavailable; message not accepted") from None
    return {
        "id": published.id,
        "room": published.room,
        "offset": published.offset,
        "epoch": published.epoch,
    }


class _RawASGI:
    """Starlette hands plain functions a WebSocket wrapper; a callable object gets the raw
    ASGI triple, which the connection drives itself (less work per message)."""

    def __init__(self, endpoint: Any) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.endpoint(scope, receive, send)


def create_app(
    settings: GatewaySettings,
    *,
    metrics: GatewayMetrics | None = None,
    tracer: Tracer | None = None,
) -> Starlette:
    gateway = Gateway(settings, metrics=metrics, tracer=tracer)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    async def websocket_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        token = (query.get("token") or [None])[0]
        compress = (query.get("compress") or [""])[0] in ("1", "deflate", "true")
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        await Connection(gateway, send, receive, ip, compress).run(token or None)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        checks = await gateway.ready()
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    async def metrics_endpoint(_request: Request) -> Response:
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def publish(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        raw = await request.body()
        try:
            if len(raw) > gateway.limits.max_message_bytes:
                raise PublishError(
                    413, "message_too_big", f"body exceeds {gateway.limits.max_message_bytes} bytes"
                )
            try:
                body = _publish_decoder.decode(raw)
            except msgspec.MsgspecError as exc:
                raise PublishError(400, "invalid_message", str(exc)[:200]) from None
            if body.type not in EVENT_TYPES:
                raise PublishError(400, "unknown_type", "unknown event type")
            principal = await authorize_publisher(gateway, token, body.room, body.type)
            result = await publish_event(gateway, principal, body)
        except PublishError as exc:
            return JSONResponse(
                {"error": {"code": exc.code, "message": exc.message}}, status_code=exc.status
            )
        return JSONResponse(result, status_code=202)

    app = Starlette(
        routes=[
            WebSocketRoute("/ws", _RawASGI(websocket_endpoint)),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            Route("/api/v1/publish", publish, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app
