"""The chart's operator RBAC is enough for the real operator: install the chart, take a
token of the operator's ServiceAccount (TokenRequest), run roomgate-operator with it (kopf,
standalone, as the chart runs it) and see it reconcile the chart's default GatewayPolicy
without a single Forbidden."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from roomgate_tools.controlplane import KubeAPI

from tests.kube.conftest import CHART, run
from tests.operator.conftest import Cluster, eventually, run_operator

pytestmark = pytest.mark.timeout(120)

NS = "roomgate-op"
SA = "rg-roomgate-operator"
POLICY = "rg-roomgate-gateway"


def service_account_api(api: KubeAPI, tmp_path: Path) -> KubeAPI:
    """A KubeAPI (and kubeconfig) that authenticates as the operator's ServiceAccount."""
    status, body = api.request(
        "POST",
        f"/api/v1/namespaces/{NS}/serviceaccounts/{SA}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
         "spec": {"expirationSeconds": 3600}},
    )  # fmt: skip
    assert status == 201, body
    token = body["status"]["token"]  # type: ignore[index]
    config = json.loads(api.kubeconfig.read_text())
    config["users"] = [{"name": "admin", "user": {"token": token}}]
    kubeconfig = tmp_path / "operator.kubeconfig"
    kubeconfig.write_text(json.dumps(config))
    return KubeAPI(url=api.url, token=token, kubeconfig=kubeconfig, ca_file=api.ca_file)


async def test_operator_reconciles_with_the_charts_rbac(
    helm: str, kube_apiserver: KubeAPI, redis_url: str, tmp_path: Path
) -> None:
    """As its ServiceAccount, the operator reads its policy, scales the gateway through the
    scale subresource and writes the policy status; the API server forbids nothing."""
    kc = str(kube_apiserver.kubeconfig)
    run([helm, "--kubeconfig", kc, "install", "rg", str(CHART), "-n", NS, "--create-namespace",
         "--set", "ingress.enabled=false", "--wait=false"])  # fmt: skip
    try:
        api = service_account_api(kube_apiserver, tmp_path)
        # The token really is the ServiceAccount's: it may not read Secrets.
        status, _ = api.request("GET", f"/api/v1/namespaces/{NS}/secrets")
        assert status == 403
        cluster = Cluster(api, NS)
        with run_operator(cluster, redis_url, kubeconfig=str(api.kubeconfig)) as operator:

            async def policy() -> dict[str, Any]:
                return await cluster.ok(
                    "GET", f"/apis/roomgate.io/v1alpha1/namespaces/{{ns}}/gatewaypolicies/{POLICY}"
                )

            done = await eventually(
                policy,
                lambda p: (
                    p.get("status", {}).get("observedGeneration") == p["metadata"]["generation"]
                ),
                timeout=30,
                what="reconciled",
            )
            assert done["status"]["conditions"], done["status"]
            scale = await cluster.ok(
                "GET", "/apis/apps/v1/namespaces/{ns}/deployments/rg-roomgate-gateway/scale"
            )
            minimum = done["spec"]["scaling"]["minReplicas"]
            assert scale["spec"]["replicas"] >= minimum, scale
            assert operator.alive()
        output = operator.runner.output
        for refused in ("Forbidden", "403", "forbidden"):
            assert refused not in output, output[-3000:]
    finally:
        run([helm, "--kubeconfig", kc, "uninstall", "rg", "-n", NS, "--wait=false"], check=False)
