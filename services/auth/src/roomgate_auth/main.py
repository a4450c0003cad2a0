"""``roomgate-auth``: read the settings, run the auth service until SIGTERM/SIGINT.

The only place that reads the environment and sets process-global state (logging, the
global tracer provider).
"""

from __future__ import annotations

import sys

from opentelemetry import trace
from roomgate_common.errors import ConfigurationError
from roomgate_common.logs import setup_logging
from roomgate_common.runtime import run, serve_until_signal
from roomgate_common.telemetry import make_tracer_provider

from roomgate_auth.server import AuthServer
from roomgate_auth.settings import AuthSettings


def main() -> None:
    try:
        settings = AuthSettings.from_env()
        policy = settings.build_policy()
        settings.service_principals()  # validated before anything starts
    except ConfigurationError as exc:
        print(f"roomgate-auth: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging("auth", settings.log_level)
    provider = make_tracer_provider("auth", settings.otlp_endpoint)
    trace.set_tracer_provider(provider)
    # The tracing interceptor costs a good share of a call's CPU; without an OTLP endpoint its
    # spans go nowhere (auth calls only Redis), so it runs only when spans are exported.
    server = AuthServer(
        settings, policy=policy, tracer_provider=provider if settings.otlp_endpoint else None
    )

    async def serve() -> None:
        await serve_until_signal(server.start, server.stop)

    try:
        run(serve)
    finally:
        provider.shutdown()


if __name__ == "__main__":
    main()
