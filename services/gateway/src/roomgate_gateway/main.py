"""``roomgate-gateway``: uvicorn (uvloop, httptools, the gateway's WebSocket protocol)
serving the gateway app, with an ordered SIGTERM drain: readiness goes false, clients get
a jittered ``reconnect`` hint and a 1012 close in waves, then uvicorn stops."""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType

import uvicorn
from opentelemetry import trace
from roomgate_common.errors import ConfigurationError
from roomgate_common.logs import setup_logging
from roomgate_common.settings import split_hostport
from roomgate_common.telemetry import make_tracer_provider

from roomgate_gateway.app import create_app
from roomgate_gateway.gateway import Gateway
from roomgate_gateway.httpprotocol import header_timeout_protocol
from roomgate_gateway.settings import GatewaySettings
from roomgate_gateway.wsprotocol import GatewayWebSocketProtocol

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn closes every WebSocket with 1012 at once on SIGTERM; drain first instead."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self.gateway = gateway
        self._draining: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining is not None or sig != signal.SIGTERM:
            super().handle_exit(sig, frame)
            return
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(self._start_drain, sig, frame)

    def _start_drain(self, sig: int, frame: FrameType | None) -> None:
        async def drain() -> None:
            try:
                await self.gateway.drain()
            finally:
                super(DrainingServer, self).handle_exit(sig, frame)

        self._draining = asyncio.get_running_loop().create_task(drain())


def build_config(settings: GatewaySettings, app: object) -> uvicorn.Config:
    host, port = split_hostport(settings.listen)
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        loop="uvloop",
        http=header_timeout_protocol(settings.header_timeout),
        interface="asgi3",  # GatewayApp.__call__ returns an awaitable (not `async def`)
        ws=GatewayWebSocketProtocol,
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.heartbeat_interval,
        ws_ping_timeout=settings.heartbeat_timeout - settings.heartbeat_interval,
        ws_per_message_deflate=False,
        lifespan="on",
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace)),
        log_config=None,
        access_log=False,
        backlog=4096,
    )


def main() -> None:
    try:
        settings = GatewaySettings.from_env()
    except ConfigurationError as exc:
        raise SystemExit(str(exc)) from None
    setup_logging("gateway", settings.log_level)
    tracer = None
    if settings.otlp_endpoint:
        provider = make_tracer_provider("gateway", settings.otlp_endpoint)
        trace.set_tracer_provider(provider)
        tracer = provider.get_tracer("roomgate.gateway")
    app = create_app(settings, tracer=tracer)
    server = DrainingServer(build_config(settings, app), app.state.gateway)
    server.run()


if __name__ == "__main__":
    main()
