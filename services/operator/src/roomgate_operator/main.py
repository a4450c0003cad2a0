"""``roomgate-operator``: kopf running the GatewayPolicy handlers (handlers.py) in one
namespace, standalone (one replica, Recreate), with kopf's liveness endpoint."""

from __future__ import annotations

import asyncio
import copy
import logging

import kopf
from roomgate_common.errors import ConfigurationError
from roomgate_common.logs import setup_logging
from roomgate_common.settings import split_hostport

from roomgate_operator.errors import OperatorError
from roomgate_operator.handlers import build_registry
from roomgate_operator.kube import load_configuration
from roomgate_operator.settings import OperatorSettings


class KopfRecordFormatter(logging.Formatter):
    """Formats with ``inner`` after dropping what kopf attaches to its per-object records
    besides ``k8s_ref``: its OperatorSettings (queues and locks: no JSON, no deepcopy)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        if "settings" in record.__dict__:
            record = copy.copy(record)  # shallow: kopf's own handlers keep theirs
            del record.__dict__["settings"]
        return self.inner.format(record)


def main() -> None:
    try:
        settings = OperatorSettings.from_env()
        host, port = split_hostport(settings.health_listen)
    except ConfigurationError as exc:
        raise SystemExit(str(exc)) from None
    try:  # fail fast, with the reason, when there are no credentials at all
        asyncio.run(load_configuration(settings.kubeconfig))
    except OperatorError as exc:
        raise SystemExit(f"roomgate-operator: {exc}") from None
    setup_logging("operator", settings.log_level)
    for handler in logging.getLogger().handlers:
        if handler.formatter is not None:
            handler.setFormatter(KopfRecordFormatter(handler.formatter))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # the liveness probe
    kopf.run(
        registry=build_registry(settings),
        standalone=True,
        namespaces=[settings.watch_namespace],
        liveness_endpoint=f"http://{host}:{port}/healthz",
    )


if __name__ == "__main__":
    main()
