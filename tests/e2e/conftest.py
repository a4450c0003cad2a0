"""End-to-end tests on a real single-node cluster (roomgate_tools.cluster; issue 15).

One cluster for the session (control plane, kubelet, containerd, kube-proxy, CoreDNS and
HAProxy Ingress), one release of the chart on it (``release``: tests/e2e/values-cluster.yaml,
``helm install --wait``), driven the way a platform team drives it: ``kubectl`` and ``helm``
(the binaries ``make cluster-tools`` built), clients through the ingress, backends through the
gateway's in-cluster Service. test_uninstall.py runs last: it removes the release.

They need root, a few minutes and the images `make images` built, so they run only with
ROOMGATE_E2E=1 (`make e2e`); a plain `make pytest` does not even collect them. Once asked
for, they fail, never skip, when something is missing.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from roomgate_tools.cluster import Cluster, ctr_import
from roomgate_tools.cluster_images import export_images
from roomgate_tools.controlplane import REPO_ROOT, KubeAPI, find_binary
from roomgate_tools.images import INFRA_REF, SERVICES, chart_images
from roomgate_tools.stack import mint_token

if os.environ.get("ROOMGATE_E2E") != "1":
    collect_ignore_glob = ["test_*.py"]

WORKDIR = REPO_ROOT / ".cache" / "e2e-cluster"
CHART = REPO_ROOT / "charts" / "roomgate"
VALUES = Path(__file__).with_name("values-cluster.yaml")
NAMESPACE = "roomgate"
RELEASE = "rg"
GATEWAY = f"{RELEASE}-roomgate-gateway"  # the Deployment, its Service and its GatewayPolicy
GATEWAY_SELECTOR = "app.kubernetes.io/instance=rg,app.kubernetes.io/component=gateway"
USER_PERMS = ("view_system", "view_tasks")
ROOMS = ("system", "tasks")
LAST = "test_uninstall.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The release's removal after every test that uses the release (the hook sees every
    item of the session: only this directory's LAST moves)."""
    last = Path(__file__).with_name(LAST)
    items.sort(key=lambda item: item.path == last)


def condition(obj: dict[str, Any], kind: str) -> str:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond["type"] == kind:
            return str(cond["status"])
    return ""


@dataclass
class RunningCluster:
    api: KubeAPI
    workdir: Path
    socket: Path
    ingress_url: str  # http://<ClusterIP of HAProxy Ingress's Service>

    def wait(self, what: str, probe: Any, timeout: float = 120.0) -> Any:
        """Poll ``probe()`` until it returns something truthy; fail with its last answer."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(1)
        logs = "\n".join(
            f"== {log.name}\n{log.read_text(errors='replace')[-1500:]}"
            for log in sorted(
                [
                    *(self.workdir / "logs").glob("*.log"),
                    *(self.workdir / "controlplane").glob("*.log"),
                ]
            )
        )
        pytest.fail(f"{what}: not after {timeout}s (last: {str(last)[-1500:]})\n{logs}")

    def import_images(self, refs: list[str]) -> None:
        for archive in export_images(refs).values():
            ctr_import(self.socket, archive)

    def tool(self, name: str, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        """Run kubectl or helm against the cluster; its stdout, or a failure with stderr."""
        argv = [find_binary(name), "--kubeconfig", str(self.api.kubeconfig), *args]
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            pytest.fail(f"{name} {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
        return done.stdout

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        return self.tool("kubectl", *args, stdin=stdin, timeout=timeout)

    def get(self, *args: str) -> dict[str, Any]:
        """``kubectl get ... -o json`` in the release's namespace."""
        data: dict[str, Any] = json.loads(self.kubectl("-n", NAMESPACE, "get", *args, "-o", "json"))
        return data


@pytest.fixture(scope="session")
def cluster() -> Iterator[RunningCluster]:
    """One real cluster for the session, state (and logs) in .cache/e2e-cluster."""
    if WORKDIR.exists():
        shutil.rmtree(WORKDIR)
    node = Cluster(WORKDIR, ingress=True)
    try:
        api = node.start()
        yield RunningCluster(
            api=api,
            workdir=WORKDIR,
            socket=WORKDIR / "containerd" / "containerd.sock",
            ingress_url=node.ingress_url,
        )
    finally:
        node.stop()


@pytest.fixture(scope="session")
def gateway_image() -> str:
    return chart_images().ref("gateway")


@dataclass
class Release:
    """The chart installed with tests/e2e/values-cluster.yaml."""

    cluster: RunningCluster
    secrets: dict[str, str]  # what mint_token needs: the release's generated JWT secret
    publish_url: str  # the gateway Service's ClusterIP: the in-cluster publish API
    pv_dir: Path  # Redis's PersistentVolume (hostPath)

    @property
    def ws_url(self) -> str:
        return self.cluster.ingress_url.replace("http://", "ws://") + "/ws"

    @property
    def sse_url(self) -> str:
        return self.cluster.ingress_url + "/sse"

    def token(self, uid: str, *, kind: str = "user", perms: tuple[str, ...] = USER_PERMS) -> str:
        return mint_token(self.secrets, uid, kind=kind, perms=perms)

    def service_token(self) -> str:
        return self.token("e2e-backend", kind="service", perms=("publish",))

    def gateway_pods(self) -> list[dict[str, Any]]:
        """The gateway's pods that are not terminating."""
        pods = self.cluster.get("pods", "-l", GATEWAY_SELECTOR)["items"]
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    def ready_gateways(self, pods: list[dict[str, Any]] | None = None) -> dict[str, str]:
        """Ready gateway pods (of ``pods``, default: ``gateway_pods()``): name → UID (the
        affinity cookie's value)."""
        return {
            p["metadata"]["name"]: p["metadata"]["uid"]
            for p in (self.gateway_pods() if pods is None else pods)
            if condition(p, "Ready") == "True" and not p["metadata"].get("deletionTimestamp")
        }

    def wait_gateways(self, replicas: int | None = None, timeout: float = 180) -> dict[str, str]:
        """Until the Deployment has ``replicas`` pods (default: its ``spec.replicas``), all
        Ready, none terminating, no other. Blocking: from a coroutine, ``asyncio.to_thread``
        it, or the clients stall (no reads, no heartbeats) while it polls."""

        def settled() -> dict[str, str] | None:
            if replicas is None:
                want = self.cluster.get("deployment", GATEWAY)["spec"]["replicas"]
            else:
                want = replicas
            pods = self.cluster.get("pods", "-l", GATEWAY_SELECTOR)["items"]
            ready = self.ready_gateways(pods)
            return ready if len(pods) == len(ready) == want else None

        result: dict[str, str] = self.cluster.wait(
            f"{replicas or 'spec.replicas'} gateway pods Ready", settled, timeout
        )
        return result


def _secret(cluster: RunningCluster, name: str, key: str) -> str:
    data = cluster.get("secret", name)["data"]
    return base64.b64decode(data[key]).decode()


@pytest.fixture(scope="session")
def release(cluster: RunningCluster) -> Release:
    """``helm install --wait`` of the chart with production-like values (values-cluster.yaml),
    after importing the images and creating the PersistentVolume Redis's claim binds to."""
    images = chart_images()
    cluster.import_images([*(images.ref(svc) for svc in SERVICES), INFRA_REF])
    pv_dir = cluster.workdir / "pv" / "redis"
    pv_dir.mkdir(parents=True)
    pv_dir.chmod(0o777)  # Redis runs as 999; a hostPath volume ignores fsGroup
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "e2e-redis"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": str(pv_dir), "type": "Directory"},
        },
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(volume))
    cluster.tool(
        "helm", "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace",
        "-f", str(VALUES), "--wait", "--timeout", "5m", timeout=400,
    )  # fmt: skip
    secrets = {
        "ROOMGATE_JWT_HS256_SECRET": _secret(
            cluster, "rg-roomgate-credentials", "jwt-hs256-secret"
        ),
        "ROOMGATE_JWT_ISSUER": "roomgate",  # the chart's auth.jwt.issuer / audience
        "ROOMGATE_JWT_AUDIENCE": "roomgate",
    }
    ip = cluster.get("service", GATEWAY)["spec"]["clusterIP"]
    return Release(cluster=cluster, secrets=secrets, publish_url=f"http://{ip}", pv_dir=pv_dir)
