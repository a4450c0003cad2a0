"""helm uninstall's pre-delete hook (roomgate_operator.uninstall) on the real API server: the
release's policies are deleted and waited for while an operator releases them; without one,
the hook releases them itself after its timeout; a user's policy is kept but no longer held
by kopf's finalizer. (The hook on a real cluster, operator and Helm included:
tests/e2e/test_uninstall.py.)"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from roomgate_operator.kube import KubeClient, load_configuration
from roomgate_operator.uninstall import KOPF_FINALIZER, main, release_policies

from tests.operator.conftest import MERGE, POLICIES, Cluster, gateway_policy

RELEASE = "app.kubernetes.io/instance=rg"
OTHER_FINALIZER = "example.com/keep-me"


async def _create(cluster: Cluster, name: str, *, release: bool, finalizers: list[str]) -> None:
    body: dict[str, Any] = gateway_policy(name)
    body["metadata"]["finalizers"] = finalizers
    if release:
        body["metadata"]["labels"] = {"app.kubernetes.io/instance": "rg"}
    await cluster.ok("POST", POLICIES, body)


async def _names(cluster: Cluster) -> dict[str, dict[str, Any]]:
    listing = await cluster.ok("GET", POLICIES)
    return {item["metadata"]["name"]: item["metadata"] for item in listing["items"]}


async def _kube(cluster: Cluster) -> KubeClient:
    return KubeClient(await load_configuration(str(cluster.api.kubeconfig)))


async def test_waits_for_the_operator_to_release_the_release_s_policies(cluster: Cluster) -> None:
    await _create(cluster, "rg-gateway", release=True, finalizers=[KOPF_FINALIZER])

    async def operator() -> None:
        """What kopf does on a deletion: run the delete handler, remove its finalizer."""
        while not (await cluster.policy("rg-gateway"))["metadata"].get("deletionTimestamp"):
            await asyncio.sleep(0.05)
        patch = {"metadata": {"finalizers": None}}
        await cluster.ok("PATCH", POLICIES + "/rg-gateway", patch, content_type=MERGE)

    kube = await _kube(cluster)
    try:
        running = asyncio.create_task(operator())
        released = await release_policies(kube, cluster.ns, RELEASE, wait=30)
        await running
    finally:
        await kube.close()
    assert released == 0  # the operator did it
    assert "rg-gateway" not in await _names(cluster)


async def test_releases_them_itself_when_no_operator_does(cluster: Cluster) -> None:
    await _create(cluster, "rg-gateway", release=True, finalizers=[KOPF_FINALIZER, OTHER_FINALIZER])
    await _create(cluster, "users-own", release=False, finalizers=[KOPF_FINALIZER])
    kube = await _kube(cluster)
    started = time.monotonic()
    try:
        released = await release_policies(kube, cluster.ns, RELEASE, wait=1.5)
    finally:
        await kube.close()
    assert time.monotonic() - started >= 1.5  # it waited for an operator first
    assert released == 2
    left = await _names(cluster)
    # The release's policy: deleted, only the finalizer that is not kopf's holds it now.
    assert left["rg-gateway"]["finalizers"] == [OTHER_FINALIZER]
    assert left["rg-gateway"].get("deletionTimestamp")
    # A user's policy: kept, no longer held by the operator about to go.
    assert not left["users-own"].get("finalizers")
    assert not left["users-own"].get("deletionTimestamp")


async def test_the_command_line_exits_0_and_1(cluster: Cluster) -> None:
    """As the chart's Job runs it; an unusable API (no credentials) is exit 1, not a trace."""
    argv = ["--namespace", cluster.ns, "--selector", RELEASE, "--timeout", "1"]
    ok = [*argv, "--kubeconfig", str(cluster.api.kubeconfig)]
    root = logging.getLogger()
    saved = root.handlers[:], root.level  # main sets up the JSON logging of the Job
    try:
        assert await asyncio.to_thread(main, ok) == 0
        assert await asyncio.to_thread(main, [*argv, "--kubeconfig", "/nonexistent"]) == 1
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
