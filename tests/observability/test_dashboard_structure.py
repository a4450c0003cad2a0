"""The Grafana dashboard JSON, checked without Grafana (AGPL: not used here): the shape
Grafana's schema v39 requires of what the chart ships, every query scoped to the dashboard's
namespace/release/pod variables, and every metric the protocol document names on a panel.
(tests/observability/test_live_stack.py evaluates every query against a real Prometheus.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "roomgate" / "files" / "dashboard.json"
# Selectors of one metric: `name{...}` (a histogram's `_bucket` too).
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\{([^{}]*)\}")

# The protocol document's "Monitoring & Metrics" list -> the metric that answers it.
PROTOCOL_METRICS = {
    "Active connections per server": "roomgate_gateway_connections",
    "Connection establishment rate": "roomgate_gateway_connects_total",
    "Connection duration distribution": "roomgate_gateway_connection_duration_seconds_bucket",
    "Reconnection frequency": "roomgate_gateway_recoveries_total",
    "Messages per second throughput": "roomgate_gateway_deliveries_total",
    "Message delivery latency": "roomgate_gateway_delivery_latency_seconds_bucket",
    "Message queue depth": "roomgate_gateway_queue_depth",
    "Failed message delivery rate": "roomgate_gateway_drops_total",
    "Memory usage per connection": "process_resident_memory_bytes",
    "CPU usage for WebSocket handling": "process_cpu_seconds_total",
    "Network bandwidth utilization": "roomgate_gateway_sent_bytes_total",
    "Redis memory usage": "roomgate_gateway_redis_memory_bytes",
}


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def targets(d: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in d["panels"] if p["type"] != "row" for t in p["targets"]]


def test_dashboard_is_generated_and_current() -> None:
    """charts/roomgate/files/dashboard.json is what tools/kube/gen_dashboard.py writes."""
    script = ROOT / "tools" / "kube" / "gen_dashboard.py"
    assert subprocess.run([sys.executable, str(script), "--check"], check=False).returncode == 0


def test_dashboard_shape() -> None:
    """Top-level fields, unique panel ids, panels on the 24-column grid without overlaps,
    unique refIds per panel, the datasource variable on every panel."""
    d = dashboard()
    assert d["uid"] == "roomgate-overview" and d["title"] == "Roomgate"
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        assert p["type"] in ("row", "timeseries"), p["title"]
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        assert all(t["expr"].strip() for t in p["targets"]), p["title"]
    assert sum(1 for p in d["panels"] if p["type"] == "row") >= 5


def test_variables_namespace_release_pod() -> None:
    """datasource, namespace, release, pod (multi, All = .*), each narrowing the next."""
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert list(variables) == ["datasource", "namespace", "release", "pod"]
    assert variables["datasource"]["type"] == "datasource"
    assert '{namespace="$namespace"}' in variables["release"]["query"]
    assert 'release="$release"' in variables["pod"]["query"]
    assert variables["pod"]["multi"] and variables["pod"]["includeAll"]
    assert variables["pod"]["allValue"] == ".*"


def test_every_selector_is_scoped_to_the_release() -> None:
    """Each metric selector filters on namespace and release; gateway series also on pod."""
    for title, t in targets(dashboard()):
        selectors = SELECTOR.findall(t["expr"])
        assert selectors, (title, t["expr"])
        for name, matchers in selectors:
            assert 'namespace="$namespace"' in matchers, (title, name)
            assert 'release="$release"' in matchers, (title, name)
            gateway = (name or "").startswith("roomgate_gateway_") and "redis_memory" not in name
            if gateway or (name or "").startswith("process_"):
                assert 'pod=~"$pod"' in matchers, (title, name)


@pytest.mark.parametrize("item", sorted(PROTOCOL_METRICS))
def test_protocol_metric_is_on_the_dashboard(item: str) -> None:
    """Every metric the protocol document's monitoring section names has a panel."""
    metric = PROTOCOL_METRICS[item]
    exprs = [t["expr"] for _title, t in targets(dashboard())]
    assert any(re.search(rf"\b{metric}\b", e) for e in exprs), item


def test_operator_panels() -> None:
    """Policy generation (wanted, applied), scaling decisions and drain have panels."""
    exprs = " ".join(t["expr"] for _title, t in targets(dashboard()))
    for metric in (
        "roomgate_operator_policy_generation",
        "roomgate_operator_applied_generation",
        "roomgate_operator_desired_replicas",
        "roomgate_operator_scale_events_total",
        "roomgate_operator_drains_total",
        "roomgate_gateway_draining",
    ):
        assert metric in exprs, metric
