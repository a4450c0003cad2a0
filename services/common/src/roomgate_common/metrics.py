"""Prometheus metrics: each service owns a CollectorRegistry (no process-global state) and
serves it on its own HTTP port."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from roomgate_common.settings import split_hostport


class MetricsServer:
    """The /metrics endpoint of one service, on a background thread."""

    def __init__(self, registry: CollectorRegistry, listen: str) -> None:
        self.registry = registry
        self._listen = listen
        self._server: WSGIServer | None = None
        self.port = 0

    def start(self) -> int:
        host, port = split_hostport(self._listen)
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        self.port = server.server_port
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
