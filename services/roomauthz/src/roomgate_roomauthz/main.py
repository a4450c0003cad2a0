"""``roomgate-roomauthz``: read the settings, set up logs, traces and metrics, serve until
SIGTERM/SIGINT, then stop in order (NOT_SERVING, drain in-flight calls, close Redis)."""

from __future__ import annotations

import logging
import sys

from opentelemetry import trace
from prometheus_client import CollectorRegistry
from roomgate_common.errors import ConfigurationError
from roomgate_common.logs import setup_logging
from roomgate_common.metrics import MetricsServer
from roomgate_common.runtime import run, serve_until_signal
from roomgate_common.telemetry import make_tracer_provider

from roomgate_roomauthz.server import RoomAuthzServer
from roomgate_roomauthz.settings import RoomAuthzSettings

log = logging.getLogger("roomgate_roomauthz")


async def serve(settings: RoomAuthzSettings) -> None:
    provider = make_tracer_provider("roomauthz", settings.otlp_endpoint)
    trace.set_tracer_provider(provider)
    registry = CollectorRegistry()
    metrics = MetricsServer(registry, settings.metrics_listen)
    # The tracing interceptor costs about a third of a call's CPU; without an OTLP endpoint
    # its spans go nowhere (roomauthz calls nothing downstream), so it runs only when exported.
    server = RoomAuthzServer(
        settings,
        registry=registry,
        tracer_provider=provider if settings.otlp_endpoint else None,
    )

    async def start() -> None:
        metrics_port = metrics.start()
        port = await server.start()
        log.info("roomauthz started", extra={"grpc_port": port, "metrics_port": metrics_port})

    async def stop() -> None:
        await server.stop()
        metrics.stop()
        provider.shutdown()

    await serve_until_signal(start, stop)


def main() -> None:
    try:
        settings = RoomAuthzSettings.from_env()
        setup_logging("roomauthz", settings.log_level)
        run(lambda: serve(settings))
    except ConfigurationError as exc:
        print(f"roomgate-roomauthz: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
