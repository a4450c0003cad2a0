"""Finding 11: agent connect/disconnect churn neither floods `agents` nor its history:
connects per principal are limited, presence changes are coalesced per agent."""

from __future__ import annotations

import asyncio

import pytest
from roomgate_common import keys
from roomgate_common.redis_adapter import connect
from roomgate_gateway.presence import PresencePolicy

from tests.gateway.conftest import Stack, recv, recv_until, send

pytestmark = pytest.mark.timeout(60)


def test_presence_policy_announces_at_most_once_per_window() -> None:
    """A flap inside the window announces nothing more; the window's end announces the final state once."""
    policy = PresencePolicy(window=2.0)
    assert policy.changed("7", True, 0.0) is True  # at once
    assert [policy.changed("7", c, 0.5) for c in (False, True, False, True)] == [None] * 4
    assert policy.due("7", 2.0) is None  # connected again: no change to announce
    assert policy.changed("7", False, 2.1) is False  # window closed: at once
    assert policy.changed("7", True, 2.2) is None
    assert policy.changed("7", False, 2.3) is None
    assert policy.due("7", 4.1) is None  # back where it was announced
    assert policy.tracked() == 0


@pytest.mark.gateway_settings(max_connects_per_principal_per_minute=1000)
async def test_a_flapping_agent_yields_few_presence_messages(stack: Stack) -> None:
    """30 connect/disconnect flaps of one agent in ~1 s: `agents` gets agent_connected, then one agent_disconnected; history holds two entries."""
    watcher = await stack.connect(stack.token("1", perms=("view_agents",)))
    await send(watcher, {"type": "subscribe", "data": {"room": "agents"}})
    assert (await recv(watcher))["type"] == "subscribed"
    for _ in range(30):
        agent = await stack.connect(stack.token("7", kind="agent", perms=()), welcome=False)
        assert (await recv(agent))["type"] == "welcome"
        await agent.close()
    seen = [(await recv(watcher, timeout=5))["type"]]
    seen.append((await recv_until(watcher, lambda m: m["room"] == "agents", timeout=10))["type"])
    assert seen == ["agent_connected", "agent_disconnected"]
    assert await recv(watcher, timeout=2.5, default=None) is None
    redis = connect(stack.redis_url)
    try:
        assert await redis.xlen(keys.room_history("agents")) == 2
    finally:
        await redis.aclose()


@pytest.mark.gateway_settings(max_connects_per_principal_per_minute=5)
async def test_connects_beyond_the_per_principal_rate_are_refused_4029(stack: Stack) -> None:
    """The 6th connect of one agent within a minute gets `connection_limit`, then close 4029; another agent still connects."""
    for _ in range(5):
        agent = await stack.connect(stack.token("7", kind="agent", perms=()))
        await agent.close()
    refused = await stack.connect(stack.token("7", kind="agent", perms=()), welcome=False)
    error = await recv(refused)
    assert (error["type"], error["data"]["code"]) == ("error", "connection_limit")
    await asyncio.wait_for(refused.wait_closed(), 5)
    assert refused.close_code == 4029
    await stack.connect(stack.token("8", kind="agent", perms=()))  # asserts the welcome
