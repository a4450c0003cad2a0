"""The gateway's HTTP/1.1 protocol: uvicorn's httptools protocol plus a header-read timeout.

uvicorn arms no timer while a request's headers arrive: ``timeout_keep_alive`` runs only
between requests and is cancelled by the first byte of the next one, so a client that opens a
socket and sends half a request line (slowloris) holds it forever. Here every request — the
first on a connection and each next one — must have its whole header block within
``header_timeout`` seconds of its first byte (of the connection, for the first); otherwise
the connection is closed. A WebSocket upgrade is a request like any other until its headers
are complete; after that the protocol's own auth deadline and heartbeat apply.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` closing connections whose request headers take too long."""

    header_timeout: float = 10.0

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class uvicorn is given (it instantiates it per connection)."""
    return type("GatewayHttpProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})
