"""The test cluster's ingress controller (issue 15): HAProxy Ingress, run as a pod.

HAProxy Ingress (github.com/jcmoraisjr/haproxy-ingress, the version in mk/kube_cluster.mk) is
built by ``make cluster-tools`` into ``.cache/kube-tools/bin/haproxy-ingress`` (the controller and
its templates); HAProxy is Debian's, from the infra image ``make images`` built. No registry is
reachable, so the pod runs the infra image with that directory mounted read-only. It runs as
the image's user, not root, with its writable paths on emptyDirs, and watches Ingresses of
class ``haproxy`` (``INGRESS_CLASS``). Clients on the host reach it through its ClusterIP
Service (kube-proxy), so it listens on nothing outside the cluster's bridge.

The controller's own HTTP server (healthz, metrics) listens on every address of its pod,
which is why it runs in a pod and not on the host like the node components.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from roomgate_tools.controlplane import KubeAPI, find_binary
from roomgate_tools.images import INFRA_REF
from roomgate_tools.procs import ProcessError

NAMESPACE = "ingress-haproxy"
NAME = "haproxy-ingress"
INGRESS_CLASS = "haproxy"
HTTP_PORT = 8080  # inside the pod: the image's user may not bind below 1024
_MOUNT = "/opt/haproxy-ingress"

# The read verbs the controller's informers need, status updates off (--update-status=false).
_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["configmaps", "endpoints", "nodes", "pods", "secrets",
                                      "services", "namespaces"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "ingressclasses"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
]  # fmt: skip

# HAProxy Ingress's global options (its ConfigMap): every listener inside the pod, above 1024.
_GLOBAL_CONFIG = {
    "http-port": str(HTTP_PORT),
    "https-port": "8443",
    "stats-port": "1936",
    "healthz-port": "10253",
    "ssl-redirect": "false",
    "syslog-endpoint": "stdout",
    "syslog-format": "raw",
}


def manifests(tools_dir: Path) -> list[dict[str, Any]]:
    """The objects ``install`` creates, in order; ``tools_dir`` holds controller + etc/."""
    labels = {"app.kubernetes.io/name": NAME}
    meta = {"name": NAME, "namespace": NAMESPACE, "labels": labels}
    controller = [
        f"{_MOUNT}/controller", f"--configmap={NAMESPACE}/{NAME}",
        f"--ingress-class={INGRESS_CLASS}", "--master-worker", "--update-status=false",
        "--watch-gateway=false", "--healthz-port=10254", "--reload-strategy=reusesocket",
    ]  # fmt: skip
    script = f"cp -R {_MOUNT}/etc/lua /etc/haproxy/ && exec {' '.join(controller)}"
    writable = ["/etc/haproxy", "/var/run/haproxy", "/var/lib/haproxy"]
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": NAME}, "rules": _RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": NAME},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": _GLOBAL_CONFIG},
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
         "metadata": {"name": INGRESS_CLASS},
         "spec": {"controller": "haproxy-ingress.github.io/controller"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "serviceAccountName": NAME,
                "securityContext": {"runAsNonRoot": True},
                "containers": [{
                    "name": "controller",
                    "image": INFRA_REF,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", script],
                    "ports": [{"name": "http", "containerPort": HTTP_PORT}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 10253},
                                       "periodSeconds": 1},
                    "volumeMounts": [
                        {"name": "tools", "mountPath": _MOUNT, "readOnly": True},
                        {"name": "templates", "mountPath": "/etc/templates", "readOnly": True},
                        *({"name": f"rw{i}", "mountPath": p} for i, p in enumerate(writable)),
                    ],
                }],
                "volumes": [
                    {"name": "tools", "hostPath": {"path": str(tools_dir), "type": "Directory"}},
                    {"name": "templates",
                     "hostPath": {"path": str(tools_dir / "etc" / "templates"),
                                  "type": "Directory"}},
                    *({"name": f"rw{i}", "emptyDir": {}} for i in range(len(writable))),
                ],
            }},
        }},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {
            "selector": labels,
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        }},
    ]  # fmt: skip


def _collection(obj: dict[str, Any]) -> str:
    group_version = obj["apiVersion"]
    base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
    plural = {"IngressClass": "ingressclasses"}.get(obj["kind"], obj["kind"].lower() + "s")
    namespace = obj["metadata"].get("namespace")
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def install(api: KubeAPI, deadline: float) -> str:
    """Create the controller's objects, wait for its pod Ready; its URL (ClusterIP, port 80)."""
    tools_dir = Path(find_binary("haproxy-ingress")).resolve()
    for obj in manifests(tools_dir):
        while True:
            status, body = api.request("POST", _collection(obj), obj)
            if status in (201, 409):
                break
            # A new namespace's ServiceAccount admission may lag a moment behind its creation.
            if time.monotonic() > deadline:
                raise ProcessError(f"{obj['kind']} {NAME}: {status} {body.get('message')}")
            time.sleep(0.5)
    pods = f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=app.kubernetes.io/name%3D{NAME}"
    last: object = ""
    while time.monotonic() < deadline:
        status, body = api.request("GET", pods)
        for pod in body.get("items", []) if status == 200 else []:
            conditions = pod["status"].get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                _, svc = api.request("GET", f"/api/v1/namespaces/{NAMESPACE}/services/{NAME}")
                return f"http://{svc['spec']['clusterIP']}"
            last = pod["status"].get("containerStatuses") or conditions
        time.sleep(1)
    raise ProcessError(f"{NAME} not Ready in time: {str(last)[-1500:]}")
