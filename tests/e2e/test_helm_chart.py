"""The Helm chart on the real test cluster: every pod of a release becomes Ready with the
local images (tests/e2e/values-cluster.yaml)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from roomgate_tools.controlplane import REPO_ROOT, find_binary
from roomgate_tools.images import INFRA_REF, SERVICES, chart_images

from tests.e2e.conftest import RunningCluster

CHART = REPO_ROOT / "charts" / "roomgate"
VALUES = Path(__file__).with_name("values-cluster.yaml")
NAMESPACE = "roomgate"

# A cluster start and image imports take longer than the suite's default timeout.
pytestmark = pytest.mark.timeout(600)


def test_chart_installs_and_every_pod_becomes_ready(cluster: RunningCluster) -> None:
    images = chart_images()
    cluster.import_images([*(images.ref(svc) for svc in SERVICES), INFRA_REF])
    helm = subprocess.run(
        [
            find_binary("helm"), "install", "rg", str(CHART), "--namespace", NAMESPACE,
            "--create-namespace", "-f", str(VALUES), "--kubeconfig", str(cluster.api.kubeconfig),
            "--wait", "--timeout", "5m",
        ],
        capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    status, pods = cluster.api.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods")
    summary = json.dumps(
        [
            {
                "name": p["metadata"]["name"],
                "phase": p["status"].get("phase"),
                "containers": p["status"].get("containerStatuses"),
            }
            for p in pods.get("items", [])
        ],
        indent=1,
    )[:6000]
    assert helm.returncode == 0, f"{helm.stdout}\n{helm.stderr}\npods:\n{summary}"
    assert status == 200 and pods["items"], summary
    for pod in pods["items"]:
        ready = [c for c in pod["status"].get("conditions") or [] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", summary
