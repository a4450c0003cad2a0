"""Issue 11, finding 10: a client cannot choose the IP it is counted under. With no trusted
proxy (the chart's default now) X-Forwarded-For is ignored; values that are not IPs or CIDRs
("*", host names) are refused at start, naming the setting."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import websockets
from roomgate_common.errors import ConfigurationError
from roomgate_gateway.settings import GatewaySettings

from tests.gateway.conftest import Stack, recv
from tests.security.edge import marked_stack

LIMIT = 10


@pytest.fixture
async def stack(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    async with marked_stack(redis_url, request) as s:
        yield s


@pytest.mark.gateway_settings(forwarded_allow_ips="", max_connections_per_ip=LIMIT)
async def test_spoofed_forwarded_for_does_not_escape_the_ip_limit(stack: Stack) -> None:
    """30 connections with 30 different X-Forwarded-For: only the per-IP limit (10) is welcomed."""
    welcomed = refused = 0
    async with contextlib.AsyncExitStack() as sockets:
        for i in range(30):
            ws = await sockets.enter_async_context(
                websockets.connect(
                    f"{stack.url}?token={stack.token(str(100 + i))}",
                    additional_headers={"X-Forwarded-For": f"203.0.113.{i + 1}"},
                )
            )
            first = await recv(ws)
            if first["type"] == "welcome":
                welcomed += 1
            else:
                assert first["data"]["code"] == "connection_limit"
                refused += 1
    assert (welcomed, refused) == (LIMIT, 30 - LIMIT)


@pytest.mark.parametrize("value", ["*", "ingress-nginx", "10.0.0.0/33", "10.0.0.1,*"])
def test_non_ip_trusted_proxies_are_refused(value: str) -> None:
    """FORWARDED_ALLOW_IPS accepts only IP addresses and CIDRs; the error names the variable."""
    with pytest.raises(ConfigurationError, match="ROOMGATE_FORWARDED_ALLOW_IPS"):
        GatewaySettings.from_env(forwarded_allow_ips=value)


def test_ip_and_cidr_lists_are_accepted() -> None:
    """Addresses and CIDRs (v4 and v6) are the trusted proxies; empty trusts none."""
    settings = GatewaySettings.from_env(forwarded_allow_ips=" 10.42.0.0/16, ::1 ")
    assert settings.trusted_proxies == ["10.42.0.0/16", "::1"]
    assert GatewaySettings.from_env(forwarded_allow_ips="").trusted_proxies == []
