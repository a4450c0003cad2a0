"""Helpers of the edge hardening tests (issue 11): gRPC channels, raw sockets, process RSS."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc


@contextlib.asynccontextmanager
async def grpc_channel(port: int) -> AsyncIterator[grpc.aio.Channel]:
    """An insecure loopback channel, closed afterwards."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        await channel.close()
