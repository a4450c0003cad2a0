"""``roomgate-escalation``: run one replica until SIGTERM/SIGINT."""

from __future__ import annotations

import logging

from opentelemetry import trace
from roomgate_common.errors import ConfigurationError
from roomgate_common.logs import setup_logging
from roomgate_common.metrics import MetricsServer
from roomgate_common.runtime import run, serve_until_signal
from roomgate_common.telemetry import make_tracer_provider

from roomgate_escalation.server import EscalationReplica
from roomgate_escalation.settings import EscalationSettings

log = logging.getLogger("roomgate_escalation")


async def _serve(settings: EscalationSettings) -> None:
    provider = make_tracer_provider("escalation", settings.otlp_endpoint)
    trace.set_tracer_provider(provider)
    replica = EscalationReplica(settings, tracer_provider=provider)
    metrics = MetricsServer(replica.registry, settings.metrics_listen)

    async def start() -> None:
        metrics.start()
        port = await replica.start()
        log.info(
            "ready",
            extra={
                "grpc_port": port,
                "metrics_port": metrics.port,
                "consumer": settings.escalation_consumer_name,
            },
        )

    async def stop() -> None:
        await replica.stop()
        metrics.stop()
        provider.shutdown()

    await serve_until_signal(start, stop)


def main() -> None:
    try:
        settings = EscalationSettings.from_env()
        config = settings.policy_config()
    except ConfigurationError as exc:
        raise SystemExit(str(exc)) from None
    del config  # validated before anything starts; the replica reads it again
    setup_logging("escalation", settings.log_level)
    run(lambda: _serve(settings))
