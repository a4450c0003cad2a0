"""A minimal HTTP/1.1 client on one kept-alive connection, for benchmark publishers.

The benchmarks POST small JSON bodies as fast as a server answers; a general client (httpx,
aiohttp) would cost the load generator more CPU per call than the servers' figures can
afford on a 2-core machine. It speaks only what the servers under test answer: a status line,
headers with ``Content-Length``, a body.
"""

from __future__ import annotations

import asyncio
import contextlib


class HttpError(RuntimeError):
    """The server answered with a status the caller did not expect, or closed the connection."""


class KeepAliveClient:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._writer is None or self._writer.is_closing() or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST ``body``; returns (status, response body). Reconnects once if the server had
        closed the kept-alive connection."""
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        for attempt in (1, 2):
            reader, writer = await self._connection()
            writer.write(head.encode() + body)
            status_line = await reader.readline()
            if status_line:
                break
            writer.close()
            self._writer = None
            if attempt == 2:
                raise HttpError("the server closed the connection")
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        payload = await reader.readexactly(length) if length else b""
        parts = status_line.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 else 0, payload

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None
