"""SIGKILL a gateway while messages flow: its clients reconnect through HAProxy to the other
gateway and recover with `since`; every client ends with every accepted message exactly
once and in order per room."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import httpx
import pytest
from roomgate_common.publisher import Publisher
from roomgate_common.redis_adapter import connect
from roomgate_tools.stack import AFFINITY_COOKIE, LocalStack

from tests.faults.conftest import (
    ROOMS,
    Accepted,
    assert_exactly_once_in_order,
    publish_http,
    publish_redis,
    resilient_clients,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)  # the stack's six processes start slowly on 2 busy cores


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_sigkill_gateway_clients_end_with_every_message_once_in_order(
    local_stack: LocalStack, transport: str
) -> None:
    """SIGKILL one gateway mid-stream: its clients (WebSocket or HTTP fallback) move to the other and miss nothing, duplicate nothing."""
    stack = local_stack
    url = stack.ws_url() if transport == "websocket" else f"{stack.lb_http}/sse"
    clients = resilient_clients(stack, url, 6, first_user=100)
    redis = connect(stack.redis_url)
    http = httpx.AsyncClient(timeout=5)
    try:
        for client in clients:
            await client.start(within=15)
        placed = {c.name: c.gateways[-1] for c in clients}
        assert all(c.cookies.get(AFFINITY_COOKIE) == placed[c.name] for c in clients)
        victim = placed["c0"]
        survivor = next(g for g in stack.config.gateway_ids if g != victim)
        on_victim = [c for c in clients if placed[c.name] == victim]
        assert on_victim and len(on_victim) < len(clients), placed  # HAProxy spread them

        publisher = Publisher(redis, sender="fault-test")
        service = stack.token("backend", kind="service", perms=("publish",))
        publish_url = f"{stack.gateway_http[survivor]}/api/v1/publish"
        accepted = Accepted()
        stop = asyncio.Event()

        async def publish() -> None:
            for n in itertools.count():
                if stop.is_set():
                    return
                room = ROOMS[n % 2]
                if n % 3 == 2:  # a third through the surviving gateway's HTTP API
                    await publish_http(http, publish_url, service, room, n, accepted)
                else:
                    await publish_redis(publisher, room, n, accepted)
                await asyncio.sleep(0.01)

        publishing = asyncio.create_task(publish())
        await wait_until(lambda: accepted.count >= 60, 15, "60 messages published")
        stack.component(victim).process.kill()  # SIGKILL
        await wait_until(
            lambda: all(c.connects >= 2 and c.all_subscribed for c in on_victim),
            20,
            "the victim's clients reconnected and resubscribed",
        )
        mark = accepted.count
        await wait_until(lambda: accepted.count >= mark + 60, 15, "60 more after the reconnect")
        stop.set()
        await publishing

        assert not accepted.unexpected, accepted.unexpected
        expected = {room: accepted.ids(room) for room in ROOMS}

        def complete() -> bool:
            return all(set(expected[r]) <= set(c.ids(r)) for c in clients for r in ROOMS)

        await wait_until(complete, 20, "every client has every accepted message")
        for client in clients:
            for room in ROOMS:
                assert_exactly_once_in_order(client, room, expected[room])
        for client in on_victim:
            assert client.gateways[-1] == survivor
            assert client.cookies[AFFINITY_COOKIE] == survivor  # re-pinned by HAProxy
            assert all(r["recovered"] for room in ROOMS for r in client.rooms[room].recoveries)
        assert stack.component(survivor).process.running
    finally:
        for client in clients:
            await client.stop()
        await http.aclose()
        with contextlib.suppress(Exception):
            await redis.aclose()
