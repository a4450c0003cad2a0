"""Finding 6: a refresh re-authorises the connection's subscriptions."""

from __future__ import annotations

import pytest

from tests.gateway.conftest import Stack, recv, recv_until, send

pytestmark = pytest.mark.timeout(30)


async def test_refresh_to_fewer_permissions_evicts_what_the_new_token_does_not_allow(
    stack: Stack,
) -> None:
    """After `refresh` to a token without view_agents, `agents` is evicted; `system` stays."""
    ws = await stack.connect(stack.token("42", perms=("view_system", "view_agents"), session="77"))
    for room in ("agents", "system"):
        await send(ws, {"type": "subscribe", "data": {"room": room}})
        assert (await recv(ws))["type"] == "subscribed"
    await send(
        ws, {"type": "refresh", "token": stack.token("42", perms=("view_system",), session="77")}
    )
    assert (await recv(ws))["type"] == "token_refreshed"
    evicted = await recv_until(ws, lambda m: m["type"] == "unsubscribed", timeout=5)
    assert (evicted["room"], evicted["data"]["reason"]) == ("agents", "missing_permission")
    await stack.publish("agents", "agent_status", {"n": 1})
    await stack.publish("system", "metrics_update", {"n": 2})
    got = await recv(ws)
    assert (got["room"], got["data"]) == ("system", {"n": 2})
    assert await recv(ws, timeout=0.3, default=None) is None
