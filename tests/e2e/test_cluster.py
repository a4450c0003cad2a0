"""The test cluster runs real pods: the node is Ready, a pod of a local image becomes Ready,
and a ClusterIP Service reaches it through kube-proxy's iptables rules."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.e2e.conftest import RunningCluster

NODE = "roomgate-node"

# A cluster start and image imports take longer than the suite's default timeout.
pytestmark = pytest.mark.timeout(600)


def _condition(obj: dict[str, Any], kind: str) -> str:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond["type"] == kind:
            return str(cond["status"])
    return ""


def test_node_is_ready(cluster: RunningCluster) -> None:
    def ready() -> bool:
        status, node = cluster.api.request("GET", f"/api/v1/nodes/{NODE}")
        return status == 200 and _condition(node, "Ready") == "True"

    cluster.wait(f"node {NODE} Ready", ready)


def test_pod_of_a_local_image_serves_through_a_service(
    cluster: RunningCluster, gateway_image: str
) -> None:
    cluster.import_images([gateway_image])
    ns = "/api/v1/namespaces/default"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "web",
                    "image": gateway_image,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-m", "http.server", "8080", "--directory", "/tmp"],
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {
                        "httpGet": {"path": "/", "port": 8080},
                        "periodSeconds": 1,
                    },
                }
            ],
        },
    }

    def created() -> bool:
        # The default ServiceAccount may not exist yet right after start.
        status, _ = cluster.api.request("POST", f"{ns}/pods", pod)
        return status in (201, 409)

    cluster.wait("pod web created", created, timeout=60)

    def pod_ready() -> bool:
        status, body = cluster.api.request("GET", f"{ns}/pods/web")
        return status == 200 and _condition(body, "Ready") == "True"

    cluster.wait("pod web Ready", pod_ready, timeout=180)

    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    status, body = cluster.api.request("POST", f"{ns}/services", service)
    assert status == 201, body
    cluster_ip = body["spec"]["clusterIP"]

    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no $http_proxy

    def answers() -> int:
        try:
            with direct.open(f"http://{cluster_ip}/", timeout=2) as resp:
                return int(resp.status)
        except (urllib.error.URLError, OSError):
            return 0

    assert cluster.wait(f"http://{cluster_ip}/ through kube-proxy", answers, timeout=60) == 200
