"""The chart against a real kube-apiserver (etcd + kube-apiserver, no controller-manager):
every object is accepted, the GatewayPolicy schema and CEL rules refuse bad objects, the
operator's RBAC is what it needs and no more, upgrade and uninstall work."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from roomgate_tools.controlplane import KubeAPI, install_crds

from tests.kube.conftest import CHART, MATRIX, kube_tool_dir, objects, render, run

pytestmark = pytest.mark.timeout(120)

NS = "roomgate"
HPA_NS = "roomgate-hpa"
GP = "/apis/roomgate.io/v1alpha1/namespaces/{ns}/gatewaypolicies"

# (API path template, kind) of every namespaced collection the chart writes to.
COLLECTIONS = {
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "StatefulSet": "/apis/apps/v1/namespaces/{ns}/statefulsets",
    "Service": "/api/v1/namespaces/{ns}/services",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    "PodDisruptionBudget": "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
    "HorizontalPodAutoscaler": "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
    "Ingress": "/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses",
    "HTTPRoute": "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes",
    "ServiceMonitor": "/apis/monitoring.coreos.com/v1/namespaces/{ns}/servicemonitors",
    "PrometheusRule": "/apis/monitoring.coreos.com/v1/namespaces/{ns}/prometheusrules",
    "GatewayPolicy": GP,
}
CLUSTER_COLLECTIONS = {
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
}


def helm_cmd(helm: str, api: KubeAPI, *args: str) -> list[str]:
    return [helm, "--kubeconfig", str(api.kubeconfig), *args]


def names(api: KubeAPI, path: str, selector: str = "app.kubernetes.io/instance=rg") -> set[str]:
    status, body = api.request("GET", f"{path}?labelSelector={selector}")
    assert status == 200, body
    return {item["metadata"]["name"] for item in body["items"]}  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def installed(helm: str, kube_apiserver: KubeAPI) -> Iterator[KubeAPI]:
    """The chart installed twice: every feature on (NetworkPolicies, ServiceMonitor, Ingress
    and HTTPRoute, the operator and its GatewayPolicy) in one namespace, and with the operator
    off and the HPA on in another."""
    install_crds(kube_apiserver, sorted(kube_tool_dir("crds").glob("*.yaml")))
    run(
        helm_cmd(helm, kube_apiserver, "install", "rg", str(CHART), "-n", NS,
                 "--create-namespace", "-f", str(MATRIX["networkpolicy"][0]),
                 "--set", "httpRoute.enabled=true", "--wait=false", "--timeout", "60s")
    )  # fmt: skip
    run(
        helm_cmd(helm, kube_apiserver, "install", "rg", str(CHART), "-n", HPA_NS,
                 "--create-namespace", "-f", str(MATRIX["hpa-operator-off"][0]),
                 "--wait=false", "--timeout", "60s")
    )  # fmt: skip
    yield kube_apiserver
    for ns in (NS, HPA_NS):
        # --no-hooks: no controller-manager here runs the operator's pre-delete hook Job
        # (operator-uninstall.yaml; tests/e2e/test_uninstall.py runs it on a real cluster).
        run(
            helm_cmd(helm, kube_apiserver, "uninstall", "rg", "-n", ns, "--wait=false",
                     "--no-hooks"),
            check=False,
        )  # fmt: skip


def test_every_rendered_object_is_in_the_cluster(helm: str, installed: KubeAPI) -> None:
    """The API server accepted every object the chart renders, of every kind."""
    expected = objects(render(helm, MATRIX["networkpolicy"], "httpRoute.enabled=true"))
    kinds = {o["kind"] for o in expected}
    assert {"NetworkPolicy", "ServiceMonitor", "HTTPRoute", "Ingress", "GatewayPolicy"} <= kinds
    assert {"PodDisruptionBudget", "ClusterRole", "Role", "StatefulSet"} <= kinds
    for obj in expected:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if "helm.sh/hook" in obj["metadata"].get("annotations", {}):
            continue  # the pre-delete hook's objects: created by helm uninstall only
        if kind in CLUSTER_COLLECTIONS:
            path = f"{CLUSTER_COLLECTIONS[kind]}/{name}"
        else:
            path = f"{COLLECTIONS[kind].format(ns=NS)}/{name}"
        status, body = installed.request("GET", path)
        assert status == 200, (kind, name, body.get("message"))
    hpa = installed.request(
        "GET", COLLECTIONS["HorizontalPodAutoscaler"].format(ns=HPA_NS) + "/rg-roomgate-gateway"
    )
    assert hpa[0] == 200
    status, deployment = installed.request(
        "GET", COLLECTIONS["Deployment"].format(ns=HPA_NS) + "/rg-roomgate-gateway"
    )
    # No replicas in the manifest: the API server defaults it to 1, the HPA takes it from there.
    assert deployment["spec"]["replicas"] == 1  # type: ignore[index]


def default_policy(api: KubeAPI) -> dict[str, Any]:
    status, body = api.request("GET", GP.format(ns=NS) + "/rg-roomgate-gateway")
    assert status == 200, body
    return body


def test_default_gateway_policy(installed: KubeAPI) -> None:
    """The chart's GatewayPolicy targets the gateway Deployment, with the API defaults."""
    policy = default_policy(installed)
    assert policy["spec"]["targetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "rg-roomgate-gateway",
    }
    assert policy["spec"]["scaling"]["minReplicas"] <= policy["spec"]["scaling"]["maxReplicas"]


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"limits": {"maxConnectionsPerIp": "many"}}, "must be of type integer"),
        ({"limits": {"maxMessageBytes": 100}}, "should be greater than or equal to 256"),
        ({"scaling": {"minReplicas": 0}}, "should be greater than or equal to 1"),
        ({"scaling": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas must not exceed"),
        (
            {"limits": {"heartbeatIntervalSeconds": 30, "heartbeatTimeoutSeconds": 30}},
            "heartbeatTimeoutSeconds must be greater",
        ),
        ({"targetRef": {"kind": "StatefulSet", "name": "x"}}, "Unsupported value"),
        ({"targetRef": None}, "targetRef"),
        ({"limits": {"maxConnectionsPerIpp": 1}}, "unknown field"),
    ],
)
def test_invalid_gateway_policies_are_rejected(
    installed: KubeAPI, patch: dict[str, Any], message: str
) -> None:
    """The API server's schema and CEL rules refuse a wrong GatewayPolicy."""
    obj = {
        "apiVersion": "roomgate.io/v1alpha1",
        "kind": "GatewayPolicy",
        "metadata": {"name": "bad", "namespace": NS},
        "spec": {"targetRef": {"name": "rg-roomgate-gateway"}, "limits": {}, "scaling": {}},
    }
    for key, value in patch.items():
        if value is None:
            del obj["spec"][key]
        elif key == "targetRef":
            obj["spec"][key] = value
        else:
            obj["spec"][key].update(value)
    status, body = installed.request("POST", GP.format(ns=NS) + "?fieldValidation=Strict", obj)
    assert status == 422 if message != "unknown field" else status in (400, 422), body
    assert message in str(body.get("message")), body


def test_status_subresource(installed: KubeAPI) -> None:
    """Status is written through /status only; spec writes leave it alone."""
    policy = default_policy(installed)
    status_body = copy.deepcopy(policy)
    status_body["status"] = {
        "observedConnections": 42,
        "podConnections": {"rg-roomgate-gateway-abc": 42},
        "desiredReplicas": 2,
        "currentReplicas": 2,
        "appliedGeneration": policy["metadata"]["generation"],
        "lastScaleTime": "2026-11-25T20:00:00Z",
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "ok",
             "lastTransitionTime": "2026-11-25T20:00:00Z"}
        ],
    }  # fmt: skip
    status, body = installed.request(
        "PUT", GP.format(ns=NS) + "/rg-roomgate-gateway/status", status_body
    )
    assert status == 200, body
    assert body["status"]["observedConnections"] == 42  # type: ignore[index]
    assert body["metadata"]["generation"] == policy["metadata"]["generation"]  # type: ignore[index]


def can(api: KubeAPI, user: str, verb: str, resource: str, *, ns: str = NS, **extra: str) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}"],
            "resourceAttributes": {"namespace": ns, "verb": verb, "resource": resource, **extra},
        },
    }
    status, body = api.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    assert status == 201, body
    return bool(body["status"]["allowed"])  # type: ignore[index]


def test_operator_rbac_is_least_privilege(installed: KubeAPI) -> None:
    """The operator may do what it needs in its namespace, and nothing else."""
    sa = f"system:serviceaccount:{NS}:rg-roomgate-operator"
    allowed = [
        ("watch", "gatewaypolicies", {"group": "roomgate.io"}),
        ("patch", "gatewaypolicies", {"group": "roomgate.io", "subresource": "status"}),
        ("get", "deployments", {"group": "apps"}),
        ("update", "deployments", {"group": "apps", "subresource": "scale"}),
        ("patch", "pods", {}),
        ("list", "pods", {}),
        ("create", "configmaps", {}),
        ("update", "configmaps", {}),
        ("create", "events", {}),
    ]
    for verb, resource, extra in allowed:
        assert can(installed, sa, verb, resource, **extra), (verb, resource, extra)
    denied = [
        ("get", "secrets", {}),
        ("delete", "deployments", {"group": "apps"}),
        ("patch", "deployments", {"group": "apps"}),
        ("get", "configmaps", {"resourceName": "x", "namespace": "kube-system"}),
        ("create", "deployments", {"group": "apps"}),
        ("delete", "pods", {}),
        ("delete", "gatewaypolicies", {"group": "roomgate.io"}),
        ("update", "roles", {"group": "rbac.authorization.k8s.io"}),
    ]
    for verb, resource, extra in denied:
        assert not can(installed, sa, verb, resource, **extra), (verb, resource, extra)
    # Nothing in another namespace.
    assert not can(installed, sa, "get", "deployments", ns="kube-system", group="apps")
    assert not can(installed, sa, "list", "pods", ns="default")


def test_upgrade_changes_a_value_and_keeps_generated_secrets(helm: str, installed: KubeAPI) -> None:
    """helm upgrade applies a changed value; generated credentials survive it."""
    secret_path = COLLECTIONS["Secret"].format(ns=HPA_NS) + "/rg-roomgate-credentials"
    _, before = installed.request("GET", secret_path)
    run(
        helm_cmd(helm, installed, "upgrade", "rg", str(CHART), "-n", HPA_NS,
                 "-f", str(MATRIX["hpa-operator-off"][0]), "--set", "logLevel=DEBUG",
                 "--set", "gateway.autoscaling.maxReplicas=20", "--wait=false")
    )  # fmt: skip
    _, after = installed.request("GET", secret_path)
    assert after["data"] == before["data"]
    _, hpa = installed.request(
        "GET", COLLECTIONS["HorizontalPodAutoscaler"].format(ns=HPA_NS) + "/rg-roomgate-gateway"
    )
    assert hpa["spec"]["maxReplicas"] == 20  # type: ignore[index]
    _, dep = installed.request(
        "GET", COLLECTIONS["Deployment"].format(ns=HPA_NS) + "/rg-roomgate-auth"
    )
    env = {
        e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
    }  # type: ignore[index]
    assert env["ROOMGATE_LOG_LEVEL"] == "DEBUG"
    history = run(helm_cmd(helm, installed, "history", "rg", "-n", HPA_NS, "-o", "yaml"))
    assert [r["status"] for r in yaml.safe_load(history)][-1] == "deployed"


def test_uninstall_leaves_nothing_behind(helm: str, installed: KubeAPI) -> None:
    """helm uninstall removes every object of the release (the CRD stays: Helm keeps crds/)."""
    run(helm_cmd(helm, installed, "uninstall", "rg", "-n", HPA_NS, "--wait=false"))
    for kind, path in COLLECTIONS.items():
        assert not names(installed, path.format(ns=HPA_NS)), kind
    # Helm's own release records are gone too.
    assert not names(installed, COLLECTIONS["Secret"].format(ns=HPA_NS), "owner=helm")
    for kind, path in CLUSTER_COLLECTIONS.items():
        left = {n for n in names(installed, path) if n.endswith(f"-{HPA_NS}")}
        assert not left, kind
    status, _ = installed.request(
        "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gatewaypolicies.roomgate.io"
    )
    assert status == 200
