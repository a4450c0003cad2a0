"""Helpers of the edge hardening tests (issue 11): gRPC channels, raw sockets, process RSS."""

from __future__ import annotations

import contextlib
import select
import socket
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from roomgate_tools.procs import ManagedProcess, free_port

from tests.gateway.conftest import Stack, running_stack


@contextlib.asynccontextmanager
async def grpc_channel(port: int) -> AsyncIterator[grpc.aio.Channel]:
    """An insecure loopback channel, closed afterwards."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        await channel.close()


@contextlib.asynccontextmanager
async def marked_stack(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """The gateway test stack, tuned by ``@pytest.mark.gateway_settings(**overrides)``."""
    marker = request.node.get_closest_marker("gateway_settings")
    async with running_stack(redis_url, **(marker.kwargs if marker else {})) as stack:
        yield stack


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@contextlib.contextmanager
def gateway_process(
    tmp_path: Path, redis_url: str, auth_port: int, authz_port: int, **env: str
) -> Iterator[tuple[int, ManagedProcess]]:
    """A real ``roomgate-gateway`` process on a free loopback port: (port, process)."""
    port = free_port()
    proc = ManagedProcess(
        [str(Path(sys.executable).with_name("roomgate-gateway"))],
        log_path=tmp_path / "gateway.log",
        env={
            "ROOMGATE_LISTEN": f"127.0.0.1:{port}",
            "ROOMGATE_REDIS_URL": redis_url,
            "ROOMGATE_AUTH_ADDR": f"127.0.0.1:{auth_port}",
            "ROOMGATE_ROOMAUTHZ_ADDR": f"127.0.0.1:{authz_port}",
            "ROOMGATE_GATEWAY_ID": "gw-edge",
            "ROOMGATE_SHUTDOWN_GRACE": "1",
            "ROOMGATE_DRAIN_SECONDS": "0",
            **env,
        },
    )
    proc.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if not proc.running or time.monotonic() > deadline:
                    raise AssertionError("gateway did not start:\n" + proc.output()) from None
                time.sleep(0.1)
        yield port, proc
    finally:
        proc.stop(10)


def upload(
    port: int, head: bytes, total: int, *, chunked: bool = False, chunk: int = 1 << 20
) -> tuple[int | None, int]:
    """Send ``head`` then up to ``total`` body bytes (in ``Transfer-Encoding: chunked``
    framing when ``chunked``), reading the answer as soon as it comes.

    Returns (HTTP status, or None when the connection was reset first; body bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    data = b"x" * chunk
    block = memoryview(b"%x\r\n%s\r\n" % (chunk, data) if chunked else data)
    chunk = len(block)
    answer, head_left, sent = b"", memoryview(head), 0
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            writing = bool(head_left) or sent < total
            readable, writable, _ = select.select([sock], [sock] if writing else [], [], 1.0)
            if readable:
                data = sock.recv(65536)
                answer += data
                if not data or b"\r\n\r\n" in answer:
                    break
            elif writable and head_left:
                head_left = head_left[sock.send(head_left) :]
            elif writable:
                sent += sock.send(block[: min(chunk, total - sent)])
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        sock.close()
    if not answer.startswith(b"HTTP/1.1 "):
        return None, sent
    return int(answer[9:12]), sent
