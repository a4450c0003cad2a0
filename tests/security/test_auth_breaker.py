"""Finding 5: oversized tokens are refused before any call to auth and cannot open its
circuit breaker."""

from __future__ import annotations

import httpx
import pytest
from roomgate_gateway.breaker import BreakerState

from tests.gateway.conftest import Stack

pytestmark = pytest.mark.timeout(60)


def auth_calls(stack: Stack) -> float:
    """Authenticate calls the auth service has answered (any outcome)."""
    total = 0.0
    for metric in stack.auth.metrics.authentications.collect():
        total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


async def test_huge_bearer_tokens_do_not_open_the_auth_breaker(stack: Stack) -> None:
    """Ten 1.5 MB bearer tokens (publish API and /sse) get 401, cost no auth call, and valid clients still connect."""
    huge = "a" * 1_500_000
    before = auth_calls(stack)
    async with httpx.AsyncClient(base_url=stack.http, timeout=10) as http:
        for _ in range(5):
            reply = await http.post(
                "/api/v1/publish",
                json={"room": "alerts", "type": "alert_triggered", "data": {}},
                headers={"Authorization": f"Bearer {huge}"},
            )
            assert reply.status_code == 401, reply.text
            sse = await http.get("/sse", headers={"Authorization": f"Bearer {huge}"})
            assert sse.status_code in (200, 401), sse.status_code  # refused either way
    assert auth_calls(stack) == before
    assert stack.gateway.auth.breaker.state is BreakerState.CLOSED
    ws = await stack.connect(stack.token("42"))  # asserts the welcome
    await ws.close()
