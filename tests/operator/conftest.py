"""The operator's end-to-end stack: the real kube-apiserver (session fixture), the
GatewayPolicy CRD from the chart, a namespace per test with a gateway Deployment and its
pods (Pending forever: no kubelet), real Redis, and the operator under kopf's KopfRunner."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import kopf
import pytest
from kopf.testing import KopfRunner
from roomgate_common.redis_adapter import Redis, connect
from roomgate_operator.handlers import build_registry
from roomgate_operator.settings import OperatorSettings
from roomgate_tools.controlplane import REPO_ROOT, KubeAPI, install_crds
from roomgate_tools.procs import free_port

CRD = REPO_ROOT / "charts" / "roomgate" / "crds" / "gatewaypolicies.roomgate.io.yaml"
POLICIES = "/apis/roomgate.io/v1alpha1/namespaces/{ns}/gatewaypolicies"
DEPLOYMENTS = "/apis/apps/v1/namespaces/{ns}/deployments"
PODS = "/api/v1/namespaces/{ns}/pods"
CONFIGMAPS = "/api/v1/namespaces/{ns}/configmaps"
MERGE = "application/merge-patch+json"
LABELS = {"app.kubernetes.io/name": "roomgate", "app.kubernetes.io/component": "gateway"}

T = TypeVar("T")


@dataclass
class Cluster:
    """One test's namespace on the real API server."""

    api: KubeAPI
    ns: str

    async def call(
        self, method: str, path: str, body: object | None = None, *, content_type: str = ""
    ) -> tuple[int, dict[str, Any]]:
        """One API call (in a thread: urllib blocks)."""
        return await asyncio.to_thread(
            self.api.request, method, path.format(ns=self.ns), body, content_type=content_type
        )

    async def ok(self, method: str, path: str, body: object | None = None, **kw: Any) -> Any:
        status, result = await self.call(method, path, body, **kw)
        assert status < 300, (status, result.get("message"))
        return result

    async def table(self, path: str) -> dict[str, list[Any]]:
        """What `kubectl get` prints: the API server's Table (printer columns) as
        {column name: [value per row]}."""

        def get() -> Any:
            req = urllib.request.Request(
                self.api.url + path.format(ns=self.ns),
                headers={
                    "Authorization": f"Bearer {self.api.token}",
                    "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io",
                },
            )
            with urllib.request.urlopen(req, context=self.api.ssl_context(), timeout=10) as r:
                return json.loads(r.read())

        table = await asyncio.to_thread(get)
        names = [c["name"] for c in table["columnDefinitions"]]
        return {n: [row["cells"][i] for row in table["rows"]] for i, n in enumerate(names)}

    async def create_pod(self, name: str) -> None:
        await self.ok("POST", PODS, pod(name))

    async def policy(self, name: str) -> dict[str, Any]:
        return await self.ok("GET", POLICIES + "/" + name)  # type: ignore[no-any-return]

    async def replicas(self, deployment: str = "gateway") -> int:
        scale = await self.ok("GET", DEPLOYMENTS + f"/{deployment}/scale")
        return int(scale["spec"].get("replicas", 0))


def deployment(name: str = "gateway", replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": LABELS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {"containers": [{"name": "gateway", "image": "roomgate-gateway:test"}]},
            },
        },
    }


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": LABELS},
        "spec": {"containers": [{"name": "gateway", "image": "roomgate-gateway:test"}]},
    }


def gateway_policy(name: str, target: str = "gateway", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "roomgate.io/v1alpha1",
        "kind": "GatewayPolicy",
        "metadata": {"name": name},
        "spec": {"targetRef": {"name": target}, **spec},
    }


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    timeout: float = 10.0,
    what: str = "",
) -> T:
    """Poll ``probe`` until ``accept`` says yes; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what or 'reached'} after {timeout}s: {value!r}")
        await asyncio.sleep(0.1)


def condition(policy: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in policy.get("status", {}).get("conditions", []):
        if cond["type"] == type_:
            return cond  # type: ignore[no-any-return]
    return {}


@pytest.fixture(scope="session")
def kube_with_crd(kube_apiserver: KubeAPI) -> KubeAPI:
    """The session's API server with the GatewayPolicy CRD installed from the chart."""
    for attempt in range(3):
        try:
            install_crds(kube_apiserver, [CRD])
            break
        except TypeError:
            # roomgate_tools.controlplane.install_crds reads status.conditions while the API
            # server still has it null (fixed there by its owner); a second call finds it.
            if attempt == 2:
                raise
            time.sleep(0.2)
    return kube_apiserver


@pytest.fixture
async def cluster(kube_with_crd: KubeAPI) -> Cluster:
    """A fresh namespace (never deleted: no controller-manager finishes it) with the gateway
    Deployment at 1 replica."""
    ns = f"op-{uuid.uuid4().hex[:8]}"
    c = Cluster(kube_with_crd, ns)
    await c.ok("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    await c.ok("POST", DEPLOYMENTS, deployment())
    return c


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client of the session's (emptied) Redis, closed after the test."""
    client = connect(redis_url)
    yield client
    await client.aclose()


@dataclass
class Operator:
    runner: KopfRunner
    liveness: str
    metrics: str

    def scrape(self) -> str:
        with urllib.request.urlopen(self.metrics, timeout=5) as resp:
            return resp.read().decode()  # type: ignore[no-any-return]

    def alive(self) -> bool:
        if self.runner.future.done():
            return False
        with urllib.request.urlopen(self.liveness, timeout=5) as resp:
            return bool(resp.status == 200)


@contextlib.contextmanager
def run_operator(cluster: Cluster, redis_url: str, **overrides: Any) -> Iterator[Operator]:
    """The operator under KopfRunner (its own thread and loop), standalone, in the test's
    namespace, reconciling every 0.3 s."""
    metrics_port = free_port()
    settings = OperatorSettings.from_env(
        **{
            "redis_url": redis_url,
            "metrics_listen": f"127.0.0.1:{metrics_port}",
            "watch_namespace": cluster.ns,
            "kubeconfig": str(cluster.api.kubeconfig),
            "reconcile_interval": 0.3,
            **overrides,
        }
    )
    kopf_settings = kopf.OperatorSettings()
    kopf_settings.watching.connect_timeout = 5
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    args = ["run", "--standalone", "--namespace", cluster.ns, "--liveness", liveness]
    with KopfRunner(
        args, registry=build_registry(settings), settings=kopf_settings, timeout=30
    ) as runner:
        yield Operator(runner, liveness, f"http://127.0.0.1:{metrics_port}/metrics")
    if runner.exception is not None:
        raise runner.exception
    assert runner.exit_code == 0, runner.output[-3000:]
    for bad in ("Traceback", "Unhandled"):
        assert bad not in runner.output, runner.output[-3000:]


def dump(obj: object) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
