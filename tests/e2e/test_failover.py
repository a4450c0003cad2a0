"""Gateway pods go away while messages flow, as they do in a cluster: ``kubectl delete pod``
and ``kubectl rollout restart``. Clients (WebSocket and SSE, through the ingress) reconnect to
the pods that stay and recover with ``since``; every client ends with every accepted message
exactly once, in order; the drains close clients in waves, not all at once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from roomgate_tools.client import RoomgateClient

from tests.e2e.conftest import GATEWAY, NAMESPACE, ROOMS, Release
from tests.faults.conftest import Accepted, assert_exactly_once_in_order, publish_http, wait_until

pytestmark = pytest.mark.timeout(420)

CLOSE_SERVICE_RESTART = 1012


@dataclass
class Traffic:
    """Clients in ``ROOMS`` and a backend publishing to them through the publish API."""

    clients: list[RoomgateClient]
    accepted: Accepted = field(default_factory=Accepted)
    # When a live session (one that got `welcome`) of any client was closed 1012 (drained).
    close_times: list[float] = field(default_factory=list)

    async def publish_more(self, count: int, within: float) -> None:
        mark = self.accepted.count
        await wait_until(lambda: self.accepted.count >= mark + count, within, f"{count} more")

    def assert_everything_once_in_order(self) -> None:
        assert not self.accepted.unexpected, self.accepted.unexpected
        for client in self.clients:
            assert client.fatal is None, (client.name, client.fatal)
            for room in ROOMS:
                assert_exactly_once_in_order(client, room, self.accepted.ids(room))


@contextlib.asynccontextmanager
async def traffic(release: Release, count: int, first_user: int) -> AsyncIterator[Traffic]:
    """``count`` clients (every other one over SSE), reconnecting fast (50 ms to 1 s backoff),
    and a publisher: 20 messages/s through the gateway Service. On exit: publishing stops and
    every client is given 30 s to hold every accepted message."""
    clients = [
        RoomgateClient(
            release.sse_url if i % 2 else release.ws_url,
            release.token(str(first_user + i)),
            rooms=ROOMS, name=f"c{i}", backoff_min=0.05, backoff_max=1.0,
        )
        for i in range(count)
    ]  # fmt: skip
    flow = Traffic(clients)
    stop = asyncio.Event()
    url, token = f"{release.publish_url}/api/v1/publish", release.service_token()

    async def publish(http: httpx.AsyncClient) -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            await publish_http(http, url, token, ROOMS[n % 2], n, flow.accepted)
            await asyncio.sleep(0.05)

    async def watch_closes() -> None:
        # A connection refused by a draining pod also ends 1012, before any `welcome`:
        # only the closes that follow a `welcome` are drained sessions.
        seen = [(0, 0)] * len(clients)  # (closes, connects) at the last look
        while not stop.is_set():
            for i, client in enumerate(clients):
                closes, connects = seen[i]
                if len(client.closes) > closes:
                    if (
                        client.connects > connects
                        and CLOSE_SERVICE_RESTART in client.closes[closes:]
                    ):
                        flow.close_times.append(time.monotonic())
                    seen[i] = (len(client.closes), client.connects)
            await asyncio.sleep(0.02)

    async with httpx.AsyncClient(timeout=5) as http:
        try:
            for client in clients:
                await client.start(within=20)
            tasks = [asyncio.create_task(publish(http)), asyncio.create_task(watch_closes())]
            await flow.publish_more(20, within=15)
            yield flow
            stop.set()
            await asyncio.gather(*tasks)

            def complete() -> bool:
                return all(
                    set(flow.accepted.ids(r)) <= set(c.ids(r)) for c in clients for r in ROOMS
                )

            await wait_until(complete, 30, "every client has every accepted message")
        finally:
            stop.set()
            await asyncio.gather(*(c.stop() for c in clients))


def bursts(times: list[float], gap: float = 0.5) -> list[int]:
    """The sizes of the bursts ``times`` form: runs separated by more than ``gap`` seconds."""
    sizes: list[int] = []
    last: float | None = None
    for t in sorted(times):
        if last is None or t - last > gap:
            sizes.append(0)
        sizes[-1] += 1
        last = t
    return sizes


async def test_kubectl_delete_pod_loses_nothing(release: Release) -> None:
    release.wait_gateways(2)
    async with traffic(release, 8, first_user=100) as flow:
        placed = {c.name: c.gateways[-1] for c in flow.clients}
        victim = placed["c0"]
        on_victim = [c for c in flow.clients if placed[c.name] == victim]
        assert 0 < len(on_victim) < len(flow.clients), placed  # the ingress spread them
        release.cluster.kubectl("-n", NAMESPACE, "delete", "pod", victim, "--wait=false")
        await wait_until(
            lambda: all(c.gateways[-1] != victim and c.all_subscribed for c in on_victim),
            60,
            "the victim's clients reconnected elsewhere and resubscribed",
        )
        await flow.publish_more(40, within=20)
    flow.assert_everything_once_in_order()
    # The deleted pod drained its clients (reconnect hint, close 1012) rather than dropping
    # them. (Waves: below, with enough clients for an assertion that cannot flake.)
    assert len(flow.close_times) >= len(on_victim), flow.close_times
    print(f"delete pod: {len(on_victim)} clients drained, bursts {bursts(flow.close_times)}")
    release.wait_gateways(2)  # the ReplicaSet replaced it


async def test_kubectl_rollout_restart_drains_in_waves_and_loses_nothing(
    release: Release,
) -> None:
    before = release.wait_gateways(2)
    async with traffic(release, 12, first_user=200) as flow:
        release.cluster.kubectl(
            "-n", NAMESPACE, "rollout", "restart", f"deployment/{GATEWAY}"
        )  # fmt: skip
        # rollout status blocks in a thread: the clients and the publisher keep running.
        await asyncio.to_thread(
            release.cluster.kubectl,
            "-n", NAMESPACE, "rollout", "status", f"deployment/{GATEWAY}", "--timeout=240s",
            timeout=260,
        )  # fmt: skip
        after = await asyncio.to_thread(release.wait_gateways, 2)
        assert not set(after) & set(before), (before, after)
        await wait_until(
            lambda: all(c.gateways[-1] in after and c.all_subscribed for c in flow.clients),
            60,
            "every client reconnected to a new pod and resubscribed",
        )
        await flow.publish_more(40, within=20)
    flow.assert_everything_once_in_order()
    # Every client was drained off an old pod (some twice: onto the second old pod first).
    assert len(flow.close_times) >= len(flow.clients), flow.close_times
    # Not all at once: maxUnavailable 0 / maxSurge 1 replaces one pod at a time, and each
    # drain spreads its clients over DRAIN_WAVES (10) random waves within drainSeconds (10 s,
    # values-cluster.yaml): the sessions span seconds and no burst holds three quarters of
    # them (a wave holds about a tenth of a pod's). The waves are random, so the bound is
    # loose on purpose: a working drain fails it with a chance far below one in a million.
    span = max(flow.close_times) - min(flow.close_times)
    sizes = bursts(flow.close_times)
    print(
        f"rollout restart: {len(flow.close_times)} drained sessions of {len(flow.clients)}"
        f" clients, bursts {sizes} over {span:.1f} s;"
        f" {flow.accepted.count} messages accepted, every one delivered once"
    )
    assert len(sizes) >= 2 and span >= 2.0, sorted(flow.close_times)
    assert max(sizes) < 0.75 * len(flow.close_times), sizes
