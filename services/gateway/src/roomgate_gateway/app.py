"""The ASGI application: ``/ws`` (the protocol; ``/sse`` is its HTTP fallback),
``POST /api/v1/publish`` (backends), ``/console`` (the operations page, built on the
browser SDK from ``clients/js``), ``/healthz``, ``/readyz``, ``/metrics``. The lifespan owns
the Gateway and everything it holds (Redis, gRPC channels, the bus subscriber)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from opentelemetry.trace import Tracer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from roomgate_common.bearer import bearer_token
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from roomgate_gateway import redaction, scrape
from roomgate_gateway.bodies import BadLength, BodyTooLarge, read_limited
from roomgate_gateway.clients import Principal
from roomgate_gateway.connection import Connection
from roomgate_gateway.fallback import fallback_routes
from roomgate_gateway.gateway import Gateway
from roomgate_gateway.metrics import GatewayMetrics
from roomgate_gateway.publishing import (
    PublishError,
    authenticate_publisher,
    check_depth,
    publish_batch_request,
    publish_request,
)
from roomgate_gateway.servicetoken import ServiceToken
from roomgate_gateway.settings import GatewaySettings
from roomgate_gateway.tracing import traced_endpoint
from roomgate_gateway.wsprotocol import DIRECT_EXTENSION

CONSOLE_DIR = Path(__file__).parent / "console"


class GatewayApp:
    """The ASGI entry point: ``/ws`` goes straight to the protocol — a connection lives for
    hours, and Starlette's middleware and router frames would stay alive (memory) for each;
    everything else (HTTP routes, lifespan) goes to the Starlette app."""

    def __init__(self, http: Starlette, websocket: Any) -> None:
        self.http = http
        self.state = http.state
        self._websocket = websocket

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Returns the handler's awaitable instead of awaiting it: no frame of this call stays
        # alive under each connection. (uvicorn is told the interface: asgi3.)
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            return self._websocket(scope, receive, send)  # type: ignore[no-any-return]
        return self.http(scope, receive, send)


def create_app(
    settings: GatewaySettings,
    *,
    metrics: GatewayMetrics | None = None,
    tracer: Tracer | None = None,
) -> GatewayApp:
    redaction.install()
    gateway = Gateway(settings, metrics=metrics, tracer=tracer)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        service_token = None
        api_key = settings.escalation_api_key.get_secret_value()
        if gateway.escalation is not None and api_key:
            # The gateway's own credential for the escalation service (servicetoken.py).
            service_token = ServiceToken(settings.auth_addr, api_key, timeout=settings.auth_timeout)
            gateway.escalation.use_credential(service_token.get)
        grpc_server = None
        if settings.grpc_listen:
            from roomgate_gateway.grpc_publish import publish_server

            grpc_server = publish_server(gateway, settings.grpc_listen, gateway.metrics.registry)
            app.state.grpc_port = await grpc_server.start()
        try:
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop(1.0)
            await gateway.stop()
            if service_token is not None:
                await service_token.close()

    def websocket_endpoint(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine itself: the ASGI task awaits the connection's run() directly,
        # one frame fewer kept for the connection's life.
        return _connection(scope, receive, send).run()

    def _connection(scope: Scope, receive: Receive, send: Send) -> Connection:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        client = scope.get("client")
        conn = Connection(
            gateway,
            send,
            receive,
            client[0] if client else "unknown",
            compress=(query.get("compress") or [""])[0] in ("1", "deflate", "true"),
            direct=(scope.get("extensions") or {}).get(DIRECT_EXTENSION),
            token=(query.get("token") or [None])[0] or None,
        )
        # Nothing of the request outlives the handshake (the token least): uvicorn keeps
        # the scope for the connection's life.
        scope["query_string"] = b""
        scope["headers"] = []
        return conn

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        checks = await gateway.ready()
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    async def metrics_endpoint(_request: Request) -> Response:
        await scrape.refresh(gateway)  # Redis INFO memory, limits: per scrape, not per message
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def publish(request: Request) -> Response:
        return await _publish_request(
            gateway, request, gateway.limits.max_message_bytes, publish_request
        )

    async def publish_batch(request: Request) -> Response:
        return await _publish_request(
            gateway, request, gateway.settings.publish_batch_max_bytes, publish_batch_request
        )

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            Route("/api/v1/publish", traced_endpoint(gateway.tracer, publish), methods=["POST"]),
            Route(
                "/api/v1/publish/batch",
                traced_endpoint(gateway.tracer, publish_batch),
                methods=["POST"],
            ),
            # The same protocol over SSE + POST when WebSockets are blocked.
            *fallback_routes(gateway),
            # Static files generated by clients/js (`make console`; checked in `make test`).
            Mount("/console", StaticFiles(directory=CONSOLE_DIR, html=True)),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return GatewayApp(app, websocket_endpoint)


async def _publish_request(
    gateway: Gateway,
    request: Request,
    limit: int,
    handle: Callable[[Gateway, Principal, bytes], Awaitable[Any]],
) -> Response:
    """The publish APIs' common steps. Who first, then how much: nothing of the body is
    read before the token is checked, a declared length over ``limit`` is refused unread,
    and a chunked body is counted as it arrives. A refusal before the body is read closes
    the connection (the rest of an upload is never read)."""
    token = bearer_token(request.headers.get("authorization", ""))
    unread = True
    try:
        principal = await authenticate_publisher(gateway, token)
        try:
            raw = await read_limited(request, limit)
        except BodyTooLarge:
            raise PublishError(413, "message_too_big", f"body exceeds {limit} bytes") from None
        except BadLength:
            raise PublishError(400, "invalid_message", "invalid Content-Length") from None
        unread = False
        check_depth(gateway, raw)
        result = await handle(gateway, principal, raw)
    except PublishError as exc:
        exc.counted(gateway)
        return JSONResponse(
            {"error": {"code": exc.code, "message": exc.message}},
            status_code=exc.status,
            headers={"connection": "close"} if unread else None,
        )
    return JSONResponse(result, status_code=202)
