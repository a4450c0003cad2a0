"""Helpers of the edge hardening tests (issue 11): gRPC channels, raw sockets, process RSS."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest

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
