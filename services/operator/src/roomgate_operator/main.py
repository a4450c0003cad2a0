"""``roomgate-operator``: kopf running the GatewayPolicy handlers (handlers.py) in one
namespace, standalone (one replica, Recreate), with kopf's liveness endpoint."""

from __future__ import annotations

import kopf
from roomgate_common.errors import ConfigurationError
from roomgate_common.logs import setup_logging
from roomgate_common.settings import split_hostport

from roomgate_operator.handlers import build_registry
from roomgate_operator.settings import OperatorSettings


def main() -> None:
    try:
        settings = OperatorSettings.from_env()
        host, port = split_hostport(settings.health_listen)
    except ConfigurationError as exc:
        raise SystemExit(str(exc)) from None
    setup_logging("operator", settings.log_level)
    kopf.run(
        registry=build_registry(settings),
        standalone=True,
        namespaces=[settings.watch_namespace],
        liveness_endpoint=f"http://{host}:{port}/healthz",
    )


if __name__ == "__main__":
    main()
