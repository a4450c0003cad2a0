"""The operator on the real cluster: a GatewayPolicy applied with ``kubectl`` changes a limit
on live connections within 5 s, and the operator scales the gateway Deployment on live
connection counts, removing the emptiest pod (not the one the ReplicaSet would pick: the
newest) when the load falls."""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from roomgate_tools.client import RoomgateClient
from roomgate_tools.stack import AFFINITY_COOKIE

from tests.e2e.conftest import GATEWAY, Release, condition
from tests.faults.conftest import wait_until

pytestmark = pytest.mark.timeout(420)

LIMIT_DEADLINE = 5.0  # issue 15: from `kubectl apply` to the live connections


def _manifest(policy: dict[str, Any]) -> dict[str, Any]:
    """What a user keeps in git for this policy: no status, no server-set metadata."""
    meta = policy["metadata"]
    return {
        "apiVersion": policy["apiVersion"],
        "kind": policy["kind"],
        "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                     "labels": meta.get("labels", {})},
        "spec": copy.deepcopy(policy["spec"]),
    }  # fmt: skip


@pytest.fixture
def policy(release: Release) -> Iterator[dict[str, Any]]:
    """The chart's GatewayPolicy as a manifest; applied back as it was after the test."""
    original = _manifest(release.cluster.get("gatewaypolicy", GATEWAY))
    yield copy.deepcopy(original)
    release.cluster.kubectl("apply", "-f", "-", stdin=json.dumps(original))


def _apply(release: Release, manifest: dict[str, Any]) -> None:
    release.cluster.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))


async def test_a_policy_applied_with_kubectl_changes_a_limit_on_live_connections(
    release: Release, policy: dict[str, Any]
) -> None:
    """maxSubscriptionsPerConnection lowered to what a live connection holds: its next
    subscribe is refused ``too_many_subscriptions``, on every gateway, the connection open."""
    release.wait_gateways(2)
    # One client per gateway pod (steered by the affinity cookie), each holding 4 rooms:
    # user-{id} and session-{id} (personal, they count) + system + tasks.
    clients = []
    for i, uid in enumerate(release.ready_gateways().values()):
        client = RoomgateClient(release.ws_url, release.token(f"{300 + i}"), rooms=["system"])
        client.cookies[AFFINITY_COOKIE] = uid
        clients.append(client)
    try:
        for client in clients:
            await client.start(within=20)
            await client.subscribe("tasks")  # allowed: the chart's limit is 100
        await wait_until(lambda: all(c.all_subscribed for c in clients), 10, "tasks joined")
        assert len({c.gateways[-1] for c in clients}) == 2, [c.gateways for c in clients]
        assert all(c.connects == 1 for c in clients)

        policy["spec"]["limits"]["maxSubscriptionsPerConnection"] = 4
        applied = time.monotonic()
        _apply(release, policy)
        refused = [False] * len(clients)
        for n in range(1, 1000):
            for i, client in enumerate(clients):
                if not refused[i]:
                    await client.subscribe(f"task-{n}")
            await asyncio.sleep(0.1)
            for i, client in enumerate(clients):
                codes = [e.get("code") for e in client.errors]
                assert set(codes) <= {"too_many_subscriptions"}, client.errors
                refused[i] = bool(codes)
            if all(refused) or time.monotonic() - applied > LIMIT_DEADLINE + 5:
                break
        elapsed = time.monotonic() - applied
        print(f"kubectl apply → too_many_subscriptions on both gateways: {elapsed:.2f} s")
        assert all(refused), "a live connection still took a room past the new limit"
        assert elapsed < LIMIT_DEADLINE, f"the limit took {elapsed:.2f} s to apply"
        # The connections stayed open (lowered limits never drop a connection).
        assert all(c.connected and c.connects == 1 for c in clients)
        # A new connection is told the limit in force.
        url = f"{release.ws_url}?token={release.token('310')}"
        async with websockets.connect(url, open_timeout=10) as ws:
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert welcome["type"] == "welcome", welcome
        assert welcome["data"]["limits"]["maxSubscriptionsPerConnection"] == 4, welcome

        def status_applied() -> bool:
            current = release.cluster.get("gatewaypolicy", GATEWAY)
            status = current.get("status", {})
            return (
                condition(current, "Applied") == "True"
                and status.get("appliedGeneration") == current["metadata"]["generation"]
            )

        await wait_until(status_applied, 15, "status.appliedGeneration caught up")
    finally:
        await asyncio.gather(*(c.stop() for c in clients))


async def _routed(release: Release, pod: str, uid: str, within: float = 60) -> None:
    """Until the ingress sends the cookie ``uid`` to ``pod``: HAProxy learns a new pod's UID
    at its next reload, a moment after the pod turned Ready."""
    deadline = time.monotonic() + within
    for n in itertools.count():  # a user per probe: connects per principal are limited
        probe = RoomgateClient(release.ws_url, release.token(f"{500 + n}"), rooms=[])
        probe.cookies[AFFINITY_COOKIE] = uid
        try:
            await probe.start(within=20)
        finally:
            await probe.stop()
        if probe.gateways[-1] == pod:
            return
        assert time.monotonic() < deadline, f"the ingress does not route {uid} to {pod}"
        await asyncio.sleep(0.5)


async def test_the_operator_scales_on_connections_and_removes_the_emptiest_pod(
    release: Release, policy: dict[str, Any]
) -> None:
    old = release.wait_gateways(2)
    created = {
        p["metadata"]["name"]: p["metadata"]["creationTimestamp"] for p in release.gateway_pods()
    }
    first, second = sorted(old, key=created.__getitem__)
    policy["spec"]["scaling"].update(
        minReplicas=2, maxReplicas=3, targetConnectionsPerPod=4,
        scaleUpStabilizationSeconds=0, scaleDownStabilizationSeconds=10,
        maxPodsRemovedPerStep=1, drainTimeoutSeconds=30,
    )  # fmt: skip
    _apply(release, policy)
    clients: dict[str, list[RoomgateClient]] = {}

    async def connect(pod: str, uid: str, count: int) -> None:
        for _ in range(count):
            user = f"{400 + sum(map(len, clients.values()))}"
            client = RoomgateClient(release.ws_url, release.token(user), rooms=["system"],
                                    backoff_min=0.05, backoff_max=1.0)  # fmt: skip
            client.cookies[AFFINITY_COOKIE] = uid
            clients.setdefault(pod, []).append(client)
            await client.start(within=20)
            assert client.gateways[-1] == pod, (client.gateways, pod)

    try:
        # 10 connections, 5 per pod: ceil(10 / 4) = 3 pods.
        await connect(first, old[first], 5)
        await connect(second, old[second], 5)
        grown = await asyncio.to_thread(release.wait_gateways, 3, 120)
        (third,) = set(grown) - set(old)
        await _routed(release, third, grown[third])
        # 4 on the new pod (14: still 3, the maximum), then the load falls to 8 = 2 pods, with
        # the oldest pod the emptiest (1) and the new one, which a ReplicaSet left to itself
        # removes first, the fullest (4).
        await connect(third, grown[third], 4)
        for client in clients[first][1:] + clients[second][3:]:
            await client.stop()
        survivor = clients[first][0]
        shrunk = await asyncio.to_thread(release.wait_gateways, 2, 150)
        assert set(shrunk) == {second, third}, (first, second, third, shrunk)
        # The drained pod's client moved to a pod that stays.
        await wait_until(
            lambda: survivor.gateways[-1] in shrunk and survivor.all_subscribed,
            30, "the emptiest pod's client reconnected",
        )  # fmt: skip
        status = release.cluster.get("gatewaypolicy", GATEWAY)["status"]
        assert status["currentReplicas"] == 2, status
    finally:
        await asyncio.gather(*(c.stop() for cs in clients.values() for c in cs))
