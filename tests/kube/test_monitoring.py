"""The chart's monitoring objects: the PrometheusRule carries exactly files/alerts.yaml (one
source for operator and plain Prometheus), is off by default, and the ServiceMonitor gives
every target the ``release`` label the dashboard and the alerts group by."""

from __future__ import annotations

import yaml

from tests.kube.conftest import CHART, VALUES_DIR, objects, render


def test_prometheus_rule_is_the_alerts_file(helm: str) -> None:
    """Rendered PrometheusRule spec == files/alerts.yaml; absent with the defaults."""
    kinds = {o["kind"] for o in objects(render(helm))}
    assert "PrometheusRule" not in kinds
    rendered = objects(render(helm, [VALUES_DIR / "networkpolicy.yaml"]))
    (rule,) = [o for o in rendered if o["kind"] == "PrometheusRule"]
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    names = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert names == {
        "RoomgateRedisUnreachable",
        "RoomgateGatewayDropRate",
        "RoomgateSlowConsumerCloses",
        "RoomgateAuthBreakerOpen",
        "RoomgateRoomauthzUnavailable",
        "RoomgateGatewayPolicyNotApplied",
        "RoomgateEscalationTimerLag",
        "RoomgateGatewaySaturated",
    }


def test_service_monitor_labels_targets_with_the_release(helm: str) -> None:
    """namespace/pod come with every target; release from the Service's instance label."""
    (sm,) = [
        o
        for o in objects(render(helm, [], "serviceMonitor.enabled=true"))
        if o["kind"] == "ServiceMonitor"
    ]
    (endpoint,) = sm["spec"]["endpoints"]
    assert {
        "sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_instance"],
        "targetLabel": "release",
    } in endpoint["relabelings"]
    assert sm["spec"]["targetLabels"] == ["app.kubernetes.io/component"]
