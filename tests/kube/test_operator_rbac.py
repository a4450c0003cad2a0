"""The chart's operator RBAC is enough for the real operator: install the chart, take a
token of the operator's ServiceAccount (TokenRequest), run roomgate-operator with it (kopf,
standalone, as the chart runs it) and see it reconcile the chart's default GatewayPolicy
without a single Forbidden."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
from kopf.testing import KopfRunner
from roomgate_operator.handlers import build_registry
from roomgate_operator.settings import OperatorSettings
from roomgate_tools.controlplane import KubeAPI
from roomgate_tools.procs import free_port

from tests.kube.conftest import CHART, run
from tests.operator.conftest import Cluster, eventually

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


@contextlib.contextmanager
def operator_as_chart_runs_it(api: KubeAPI, redis_url: str) -> Iterator[KopfRunner]:
    """roomgate-operator's kopf registry, standalone, serving NS, with ``api``'s credentials
    and the environment the chart gives it."""
    settings = OperatorSettings.from_env(
        redis_url=redis_url,
        watch_namespace=NS,
        gateway_deployment="rg-roomgate-gateway",
        manage_scaling=True,
        kubeconfig=str(api.kubeconfig),
        reconcile_interval=0.3,
    )
    kopf_settings = kopf.OperatorSettings()
    kopf_settings.watching.connect_timeout = 5
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    args = ["run", "--standalone", "--namespace", NS, "--liveness", liveness]
    with KopfRunner(
        args, registry=build_registry(settings), settings=kopf_settings, timeout=30
    ) as runner:
        yield runner


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
        with operator_as_chart_runs_it(api, redis_url) as runner:

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
            assert not runner.future.done()
        output = runner.output
        # RBAC is this test's concern: nothing the operator asked for was refused.
        for refused in ("Forbidden", "forbidden", " 403"):
            assert refused not in output, output[-3000:]
    finally:
        # --no-hooks: nothing here runs the pre-delete hook's Job (no controller-manager).
        run([helm, "--kubeconfig", kc, "uninstall", "rg", "-n", NS, "--wait=false", "--no-hooks"],
            check=False)  # fmt: skip
