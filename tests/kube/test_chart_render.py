"""The chart offline: helm lint --strict, helm template for the values matrix validated by
kubeconform -strict against schemas made from the real API server's OpenAPI, the values
schema, and the rules the templates must keep."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.kube.conftest import (
    CHART,
    MATRIX,
    VALUES_DIR,
    by_kind,
    kube_tool_dir,
    objects,
    render,
    run,
)

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("case", MATRIX)
def test_helm_lint_strict(helm: str, case: str) -> None:
    """helm lint --strict passes for every values case."""
    argv = [helm, "lint", "--strict", str(CHART)]
    for v in MATRIX[case]:
        argv += ["-f", str(v)]
    run(argv)


@pytest.mark.parametrize("case", MATRIX)
def test_rendered_objects_validate_strictly(helm: str, kubeconform: str, case: str) -> None:
    """Every rendered object, CRD kinds included, matches its schema with no unknown field."""
    schemas = kube_tool_dir("schemas")
    manifest = render(helm, MATRIX[case])
    out = run(
        [
            kubeconform,
            "-strict",
            "-summary",
            "-output",
            "json",
            "-schema-location",
            f"{schemas}/{{{{.Group}}}}/{{{{.ResourceKind}}}}_{{{{.ResourceAPIVersion}}}}.json",
        ],
        stdin=manifest,
    )
    summary = json.loads(out)["summary"]
    assert summary["invalid"] == 0 and summary["errors"] == 0 and summary["skipped"] == 0, out
    assert summary["valid"] == len(objects(manifest))


def test_kubeconform_rejects_a_wrong_field(helm: str, kubeconform: str) -> None:
    """The offline schemas are strict: an unknown field in a Deployment is an error."""
    schemas = kube_tool_dir("schemas")
    manifest = render(helm).replace("revisionHistoryLimit: 5", "revisionHistoryLimits: 5", 1)
    proc = subprocess.run(
        [kubeconform, "-strict", "-schema-location",
         f"{schemas}/{{{{.Group}}}}/{{{{.ResourceKind}}}}_{{{{.ResourceAPIVersion}}}}.json"],
        input=manifest, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "revisionHistoryLimits" in proc.stdout


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["unknownKey=1"], "additional properties 'unknownKey' not allowed"),
        (["gateway.replicas=two"], "'/gateway/replicas': got string, want integer"),
        (["gateway.port=70000"], "/gateway/port"),
        (["externalRedis.mode=replicated"], "/externalRedis/mode"),
        (["gateway.resourcez.x=1"], "'resourcez' not allowed"),
        (["operator.defaultPolicy.scaling.minReplicas=0"], "/minReplicas"),
        (["gateway.autoscaling.enabled=true"], "choose one"),
        (["gateway.drainSeconds=60"], "terminationGracePeriodSeconds must exceed"),
        (["redis.enabled=false"], "externalRedis.addresses is required"),
    ],
)
def test_bad_values_are_refused(helm: str, sets: list[str], message: str) -> None:
    """values.schema.json and the template guards refuse wrong values with a clear message."""
    argv = [helm, "template", "rg", str(CHART)]
    for s in sets:
        argv += ["--set", s]
    out = run(argv, check=False)
    assert "Error" in out and message in out, out


@pytest.mark.parametrize("tool", ["gen_values_schema.py", "gen_chart_readme.py"])
def test_generated_chart_files_are_current(tool: str) -> None:
    """values.schema.json and the README's values table follow values.yaml."""
    python = str(CHART.parents[1] / ".venv" / "bin" / "python")
    run([python, str(CHART.parents[1] / "tools" / "kube" / tool), "--check"])


def test_replicas_left_to_the_scaler(helm: str) -> None:
    """The gateway Deployment has no replicas when the operator or the HPA scales it."""
    with_operator = by_kind(objects(render(helm)), "Deployment")["rg-roomgate-gateway"]
    assert "replicas" not in with_operator["spec"]
    with_hpa = objects(render(helm, MATRIX["hpa-operator-off"]))
    assert "replicas" not in by_kind(with_hpa, "Deployment")["rg-roomgate-gateway"]["spec"]
    assert by_kind(with_hpa, "HorizontalPodAutoscaler")
    fixed = objects(render(helm, (), "operator.manageScaling=false", "gateway.replicas=4"))
    assert by_kind(fixed, "Deployment")["rg-roomgate-gateway"]["spec"]["replicas"] == 4
    assert not by_kind(fixed, "HorizontalPodAutoscaler")


def test_every_pod_is_hardened(helm: str) -> None:
    """Every container: non-root, read-only root, no capabilities, RuntimeDefault seccomp."""
    for case, values in MATRIX.items():
        for obj in objects(render(helm, values)):
            if obj["kind"] not in ("Deployment", "StatefulSet", "Job"):
                continue
            pod = obj["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True, (case, obj["metadata"]["name"])
            for c in pod["containers"]:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True
                assert sc["allowPrivilegeEscalation"] is False
                assert sc["capabilities"]["drop"] == ["ALL"]
                assert sc["seccompProfile"]["type"] == "RuntimeDefault"
                assert c["resources"]["requests"]
                assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])


def test_uninstall_hook_releases_the_policies_with_least_privilege(helm: str) -> None:
    """helm uninstall's pre-delete hook (operator-uninstall.yaml): a Job that may only list,
    delete and patch GatewayPolicies, inside the operator's NetworkPolicy, gone once done."""
    docs = objects(render(helm))
    hooks = [d for d in docs if d["metadata"].get("annotations", {}).get("helm.sh/hook")]
    assert {(d["kind"], d["metadata"]["name"]) for d in hooks} == {
        (kind, "rg-roomgate-operator-uninstall")
        for kind in ("ServiceAccount", "Role", "RoleBinding", "Job")
    }
    for hook in hooks:
        annotations = hook["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-delete"
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    role = by_kind(hooks, "Role")["rg-roomgate-operator-uninstall"]
    assert role["rules"] == [
        {"apiGroups": ["roomgate.io"], "resources": ["gatewaypolicies"],
         "verbs": ["list", "delete", "patch"]}
    ]  # fmt: skip
    job = by_kind(hooks, "Job")["rg-roomgate-operator-uninstall"]
    pod = job["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == "rg-roomgate-operator-uninstall"
    command = pod["spec"]["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "roomgate_operator.uninstall"]
    assert "--selector=app.kubernetes.io/instance=rg" in command and "--timeout=60" in command
    policy = by_kind(docs, "NetworkPolicy")["rg-roomgate-operator"]["spec"]["podSelector"]
    labels = pod["metadata"]["labels"]
    assert all(labels[k] == v for k, v in policy["matchLabels"].items())
    (expression,) = policy["matchExpressions"]
    assert labels[expression["key"]] in expression["values"]
    assert "operator" in expression["values"]
    assert not [d for d in objects(render(helm, (), "operator.enabled=false"))
                if d["metadata"].get("annotations", {}).get("helm.sh/hook")]  # fmt: skip


def test_probes_and_grace(helm: str) -> None:
    """gRPC services use native gRPC probes; the gateway /readyz and /healthz and a grace
    period longer than its drain; the operator one replica, Recreate, with a liveness probe."""
    docs = objects(render(helm))
    deployments = by_kind(docs, "Deployment")
    for svc in ("auth", "roomauthz", "escalation"):
        c = deployments[f"rg-roomgate-{svc}"]["spec"]["template"]["spec"]["containers"][0]
        assert "grpc" in c["readinessProbe"] and "grpc" in c["livenessProbe"]
    gw = deployments["rg-roomgate-gateway"]["spec"]["template"]["spec"]
    c = gw["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert gw["terminationGracePeriodSeconds"] > float(env["ROOMGATE_SHUTDOWN_GRACE"])
    assert env["ROOMGATE_AUTH_ADDR"].startswith("dns:///rg-roomgate-auth.roomgate.svc:")
    op = deployments["rg-roomgate-operator"]["spec"]
    assert op["replicas"] == 1 and op["strategy"]["type"] == "Recreate"
    assert "livenessProbe" in op["template"]["spec"]["containers"][0]


def test_grpc_services_are_headless(helm: str) -> None:
    """gRPC Services are headless so that the gateway balances over every pod."""
    services = by_kind(objects(render(helm)), "Service")
    for svc in ("auth", "roomauthz", "escalation"):
        assert services[f"rg-roomgate-{svc}"]["spec"]["clusterIP"] == "None"


def test_ingress_affinity_and_websocket_timeouts(helm: str) -> None:
    """The Ingress pins clients by cookie and keeps WebSockets open for an hour."""
    ingress = by_kind(objects(render(helm)), "Ingress")["rg-roomgate-gateway"]
    a = ingress["metadata"]["annotations"]
    assert a["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert a["nginx.ingress.kubernetes.io/affinity-mode"] == "persistent"
    assert a["nginx.ingress.kubernetes.io/session-cookie-name"] == "roomgate-affinity"
    assert a["nginx.ingress.kubernetes.io/session-cookie-max-age"]
    assert a["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert a["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    # The same settings for HAProxy Ingress (the e2e cluster's controller, tests/e2e).
    h = "haproxy-ingress.github.io/"
    assert a[h + "affinity"] == "cookie"
    assert a[h + "session-cookie-name"] == "roomgate-affinity"
    assert a[h + "session-cookie-dynamic"] == "false"
    assert a[h + "session-cookie-value-strategy"] == "pod-uid"
    assert a[h + "session-cookie-preserve"] == "true"
    assert a[h + "session-cookie-keywords"].endswith("attr Max-Age=172800")
    assert a[h + "timeout-tunnel"] == a[h + "timeout-server"] == "3600s"
    off = objects(render(helm, (), "ingress.affinity.enabled=false"))
    no_affinity = by_kind(off, "Ingress")["rg-roomgate-gateway"]["metadata"]["annotations"]
    assert not [k for k in no_affinity if "affinity" in k or "cookie" in k]
    assert no_affinity[h + "timeout-tunnel"] == "3600s"
    # The protocol, its SSE fallback and the console are public: /metrics and the publish
    # API stay in the cluster.
    public = ["/ws", "/sse", "/console"]
    paths = [p["path"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert paths == public
    route_docs = objects(render(helm, MATRIX["gateway-api"]))
    assert not by_kind(route_docs, "Ingress")
    rule = by_kind(route_docs, "HTTPRoute")["rg-roomgate-gateway"]["spec"]["rules"][0]
    assert rule["sessionPersistence"]["type"] == "Cookie"
    assert [m["path"]["value"] for m in rule["matches"]] == public


def test_redis_choices(helm: str) -> None:
    """Bundled Redis: a StatefulSet with AOF on a PVC; external: URLs per mode, password from
    the Secret spliced in by the kubelet."""
    docs = objects(render(helm))
    sts = by_kind(docs, "StatefulSet")["rg-roomgate-redis"]
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert sts["spec"]["volumeClaimTemplates"]

    def redis_url(values: list) -> str:  # type: ignore[type-arg]
        gw = by_kind(objects(render(helm, values)), "Deployment")["rg-roomgate-gateway"]
        env = {
            e["name"]: e.get("value")
            for e in gw["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        return env["ROOMGATE_REDIS_URL"]

    assert redis_url([]) == "redis://:$(ROOMGATE_REDIS_PASSWORD)@rg-roomgate-redis:6379/0"
    assert redis_url(MATRIX["external-redis"]) == (
        "rediss://roomgate:$(ROOMGATE_REDIS_PASSWORD)@redis.databases.svc:6380/0"
    )
    assert redis_url(MATRIX["hpa-operator-off"]) == "redis+cluster://redis-0.redis:6379"
    assert redis_url(MATRIX["production-example"]) == (
        "rediss+cluster://:$(ROOMGATE_REDIS_PASSWORD)@redis-cluster.redis.svc:6379"
    )
    sentinel = VALUES_DIR / "sentinel.yaml"
    assert redis_url([sentinel]) == (
        "redis+sentinel://:$(ROOMGATE_REDIS_PASSWORD)@s0:26379,s1:26379/roomgate/2"
    )
    assert not by_kind(objects(render(helm, MATRIX["external-redis"])), "StatefulSet")


def test_dashboard_uses_the_services_metric_names() -> None:
    """Every metric the dashboard queries is registered by the service that owns it."""
    import re

    root = CHART.parents[1]
    owners = {
        "roomgate_gateway_": "gateway",
        "roomgate_auth_": "auth",
        "roomgate_roomauthz_": "roomauthz",
        "roomgate_escalation_": "escalation",
        "roomgate_operator_": "operator",
    }
    text = (CHART / "files" / "dashboard.json").read_text()
    names = set(re.findall(r"\b(roomgate_[a-z_]+|roomauthz_[a-z_]+)", text))
    checked = 0
    for name in sorted(names):
        base = re.sub(r"_(total|bucket|count|sum)$", "", name)
        prefix = next((p for p in owners if base.startswith(p)), None)
        src = root / "services" / owners.get(prefix or "", "-") / "src"
        if prefix is None or not src.exists():  # a regex alternative, or code not written yet
            continue
        code = "\n".join(p.read_text() for p in src.rglob("*.py"))
        code += (
            root / "services" / "common" / "src" / "roomgate_common" / "grpcserver.py"
        ).read_text()
        suffix = base.removeprefix(prefix)  # type: ignore[arg-type]
        assert f'_{suffix}"' in code or f'"{base}"' in code, name
        checked += 1
    assert checked >= 10


def test_crd_limits_match_what_the_gateway_accepts() -> None:
    """Every spec.limits field of the CRD is one the gateway applies, within its range."""
    import yaml
    from roomgate_gateway.limits import POLICY_FIELDS

    crd = yaml.safe_load((CHART / "crds" / "gatewaypolicies.roomgate.io.yaml").read_text())
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    limits = props["properties"]["limits"]["properties"]
    assert set(limits) == set(POLICY_FIELDS)
    for name, (_attr, _kind, low, high) in POLICY_FIELDS.items():
        assert limits[name]["minimum"] >= low, name
        assert limits[name]["maximum"] <= high, name
