"""``helm upgrade`` then ``helm uninstall`` of the release on the real cluster: no error, every
pod Ready again after the upgrade, and after the uninstall nothing of the release left but
what Helm and Kubernetes keep by design (docs/deploy.md): the CRD (Helm never deletes what
``crds/`` installed) and Redis's PersistentVolumeClaim (StatefulSet claims outlive their
StatefulSet). Runs last (conftest.py orders it): it removes the release the others use."""

from __future__ import annotations

import json

import pytest
from roomgate_operator.uninstall import KOPF_FINALIZER

from tests.e2e.conftest import CHART, GATEWAY, NAMESPACE, RELEASE, VALUES, Release, condition

pytestmark = pytest.mark.timeout(600)

# What the namespace holds without any release: its default ServiceAccount and root CA.
NAMESPACE_DEFAULTS = {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}
KEPT_BY_DESIGN = {("PersistentVolumeClaim", "data-rg-roomgate-redis-0")}
CRD = "gatewaypolicies.roomgate.io"


def _listed(release: Release, *selection: str, namespaced: bool) -> set[tuple[str, str]]:
    """(kind, name) of every object of every listable type, in the release's namespace or
    cluster-wide, narrowed by ``selection`` (e.g. ``-l``); events aside (records, not objects
    the release owns)."""
    types = release.cluster.kubectl(
        "api-resources", "--verbs=list", f"--namespaced={str(namespaced).lower()}", "-o", "name"
    ).split()
    types = [t for t in types if t not in ("events", "events.events.k8s.io")]
    where = ["-n", NAMESPACE] if namespaced else []
    listing = json.loads(
        release.cluster.kubectl("get", ",".join(types), *where, *selection, "-o", "json")
    )
    return {(o["kind"], o["metadata"]["name"]) for o in listing["items"]}


def test_helm_upgrade_then_uninstall_leave_no_error_and_no_leftovers(release: Release) -> None:
    cluster = release.cluster
    before = set(release.wait_gateways())
    # A changed value (the drain length) rolls the gateways; --wait: until all Ready again.
    cluster.tool(
        "helm", "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(VALUES),
        "--set", "gateway.drainSeconds=8", "--wait", "--timeout", "5m", timeout=400,
    )  # fmt: skip
    after = release.wait_gateways()
    assert not set(after) & before, "the upgrade did not roll the gateways"
    for pod in cluster.get("pods")["items"]:
        assert condition(pod, "Ready") == "True", pod["metadata"]["name"]
    history = json.loads(cluster.tool("helm", "history", RELEASE, "-n", NAMESPACE, "-o", "json"))
    assert [h["status"] for h in history] == ["superseded", "deployed"], history

    # The operator's finalizer holds the policy: without the pre-delete hook (roomgate_operator
    # .uninstall) nothing would release it once Helm has removed the operator.
    policy = cluster.get("gatewaypolicy", GATEWAY)
    assert KOPF_FINALIZER in policy["metadata"].get("finalizers", []), policy["metadata"]
    cluster.tool(
        "helm", "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "5m",
        timeout=400,
    )  # fmt: skip

    def leftovers() -> set[tuple[str, str]]:
        return _listed(release, namespaced=True) - NAMESPACE_DEFAULTS - KEPT_BY_DESIGN

    # Pods take their grace period to go (the gateways drain): wait for an empty namespace.
    cluster.wait(f"nothing of the release left in {NAMESPACE}", lambda: not leftovers())
    assert _listed(release, namespaced=True) >= KEPT_BY_DESIGN
    instance = f"app.kubernetes.io/instance={RELEASE}"
    assert not _listed(release, "-l", instance, namespaced=False)  # ClusterRoles, bindings
    # The GatewayPolicy went with the rest (leftovers() above); the CRD stays, as documented:
    # kubectl get fails the test when it is gone.
    cluster.kubectl("get", "crd", CRD)
