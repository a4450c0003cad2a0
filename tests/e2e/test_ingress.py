"""Through HAProxy Ingress, as a browser or an agent meets the release: WebSocket and SSE
clients connect, authenticate, subscribe and receive what a backend publishes through the
in-cluster publish API; the affinity cookie (the pod's UID) brings a reconnecting client back
to its gateway pod."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from roomgate_tools.client import RoomgateClient
from roomgate_tools.stack import AFFINITY_COOKIE

from tests.e2e.conftest import ROOMS, Release
from tests.faults.conftest import Accepted, assert_exactly_once_in_order, publish_http, wait_until

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_clients_receive_what_a_backend_publishes(release: Release, transport: str) -> None:
    url = release.ws_url if transport == "websocket" else release.sse_url
    clients = [
        RoomgateClient(url, release.token(f"{10 + i}"), rooms=ROOMS, name=f"c{i}") for i in range(4)
    ]
    accepted = Accepted()
    try:
        for client in clients:
            await client.start(within=20)
        gateways = release.ready_gateways()
        for client in clients:
            # welcome names the pod (ROOMGATE_GATEWAY_ID), the ingress's cookie its UID.
            assert client.gateways[-1] in gateways, (client.gateways, gateways)
            assert client.cookies.get(AFFINITY_COOKIE) == gateways[client.gateways[-1]]
        async with httpx.AsyncClient(timeout=10) as http:
            for n in range(20):
                await publish_http(
                    http, f"{release.publish_url}/api/v1/publish", release.service_token(),
                    ROOMS[n % 2], n, accepted,
                )  # fmt: skip
        assert accepted.count == 20 and not accepted.refused and not accepted.unexpected, accepted

        def complete() -> bool:
            return all(len(c.ids(r)) >= len(accepted.ids(r)) for c in clients for r in ROOMS)

        await wait_until(complete, 15, "every client has every published message")
        for client in clients:
            for room in ROOMS:
                assert_exactly_once_in_order(client, room, accepted.ids(room))
    finally:
        await asyncio.gather(*(c.stop() for c in clients))


async def test_a_reconnecting_client_lands_on_the_same_pod(release: Release) -> None:
    """Fresh clients spread over both pods (HAProxy balances round robin), so each one's
    return to its first pod, five times, is the cookie's doing."""
    gateways = release.ready_gateways()
    assert len(gateways) == 2, gateways
    clients = [
        RoomgateClient(release.ws_url, release.token(f"{20 + i}"), rooms=["system"], name=f"a{i}")
        for i in range(6)
    ]
    try:
        for client in clients:
            await client.start(within=20)
        first = {c.name: c.gateways[0] for c in clients}
        assert set(first.values()) == set(gateways), first  # both pods took clients
        for _ in range(5):
            for client in clients:
                await client.stop()  # closes its connection; keeps its cookies
                await client.start(within=20)
        for client in clients:
            assert client.connects == 6, client.gateways
            assert Counter(client.gateways) == {first[client.name]: 6}, client.gateways
            assert client.cookies[AFFINITY_COOKIE] == gateways[first[client.name]]
    finally:
        await asyncio.gather(*(c.stop() for c in clients))
