"""The Helm chart on the real cluster (tests/e2e/values-cluster.yaml): ``helm install --wait``
brings every pod of the release to Ready: two gateways (the operator's minReplicas), the
operator, auth, roomauthz, escalation, and Redis writing its AOF to a bound PersistentVolume."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import GATEWAY, NAMESPACE, Release, condition

# A cluster start, image imports and the install take longer than the suite's default timeout.
pytestmark = pytest.mark.timeout(900)

COMPONENTS = {"gateway", "operator", "auth", "roomauthz", "escalation", "redis"}


def test_chart_installs_and_every_pod_becomes_ready(release: Release) -> None:
    pods = release.cluster.get("pods")["items"]
    summary = json.dumps(
        [
            {"name": p["metadata"]["name"], "phase": p["status"].get("phase"),
             "containers": p["status"].get("containerStatuses")}
            for p in pods
        ],
        indent=1,
    )[:6000]  # fmt: skip
    assert pods, f"no pod in {NAMESPACE}"
    for pod in pods:
        assert condition(pod, "Ready") == "True", summary
        # No crash loop while the release's pods came up together (Redis a few seconds
        # after the gateways and escalation: they wait for it, tests/gateway/test_redis_at_start.py).
        for container in pod["status"].get("containerStatuses") or []:
            assert container["restartCount"] == 0, summary
    by_component: dict[str, int] = {}
    for pod in pods:
        component = pod["metadata"]["labels"].get("app.kubernetes.io/component", "")
        by_component[component] = by_component.get(component, 0) + 1
    assert set(by_component) == COMPONENTS, by_component
    # The operator (not the chart: the Deployment has no replicas) set the gateways to 2.
    assert by_component["gateway"] == 2, by_component
    deployment = release.cluster.get("deployment", GATEWAY)
    assert deployment["spec"]["replicas"] == 2
    policy = release.cluster.get("gatewaypolicy", GATEWAY)
    assert condition(policy, "Applied") == "True", policy.get("status")
    assert policy["status"]["liveGateways"] == 2, policy["status"]


def test_redis_writes_its_aof_to_the_persistent_volume(release: Release) -> None:
    claim = release.cluster.get("pvc", "data-rg-roomgate-redis-0")
    assert claim["status"]["phase"] == "Bound", claim["status"]
    assert claim["spec"]["volumeName"] == "e2e-redis"

    def aof_files() -> list[str]:
        return sorted(p.name for p in release.pv_dir.rglob("*.aof"))

    # Redis 7 keeps a base and an incremental file under appendonlydir/.
    files = release.cluster.wait("Redis's AOF on the volume", aof_files, timeout=30)
    assert any(name.endswith(".incr.aof") for name in files), files
