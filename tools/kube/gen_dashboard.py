"""Write charts/roomgate/files/dashboard.json, the Grafana dashboard the chart ships.

Metric names are the services' own (grep `Counter(`/`Gauge(`/`Histogram(` in
services/*/src/*/metrics.py and server.py): roomgate_gateway_*, roomgate_auth_*,
roomauthz_* (roomauthz's prefix), roomgate_escalation_*.

    .venv/bin/python tools/kube/gen_dashboard.py [--check]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TARGET = Path(__file__).resolve().parents[2] / "charts" / "roomgate" / "files" / "dashboard.json"
SEL = 'namespace="$namespace"'


def quantiles(
    metric: str, by: str = "", qs: tuple[float, ...] = (0.5, 0.99)
) -> list[tuple[str, str]]:
    group = f"le, {by}" if by else "le"
    label = f"{{{{{by}}}}} " if by else ""
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) "
            f"(rate({metric}_bucket{{{SEL}}}[$__rate_interval])))",
            f"{label}p{int(q * 100)}",
        )
        for q in qs
    ]


def rate(metric: str, by: str = "", legend: str = "") -> tuple[str, str]:
    return (
        f"sum{f' by ({by})' if by else ''} (rate({metric}{{{SEL}}}[$__rate_interval]))",
        legend or (f"{{{{{by}}}}}" if by else metric),
    )


def build() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []

    def panel(title: str, exprs: list[tuple[str, str]], unit: str = "short") -> None:
        n = len(panels)
        panels.append(
            {
                "id": n + 1,
                "type": "timeseries",
                "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"x": 12 * (n % 2), "y": 8 * (n // 2), "w": 12, "h": 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                            "tooltip": {"mode": "multi"}},
                "targets": [
                    {"refId": chr(65 + i), "expr": e, "legendFormat": legend}
                    for i, (e, legend) in enumerate(exprs)
                ],
            }
        )  # fmt: skip

    g = "roomgate_gateway"
    panel(
        "Open connections",
        [(f"sum by (pod) ({g}_connections{{{SEL}}})", "{{pod}}"),
         (f"sum({g}_connections{{{SEL}}})", "total")],
    )  # fmt: skip
    panel("Connects per second by outcome", [rate(f"{g}_connects_total", "outcome")], "ops")
    panel("Deliveries per second", [rate(f"{g}_deliveries_total", legend="deliveries/s")], "ops")
    panel("Dropped messages by reason", [rate(f"{g}_drops_total", "reason")], "ops")
    panel(
        "Outbound queue depth",
        [(f"sum by (pod) ({g}_queue_depth{{{SEL}}})", "{{pod}}")],
    )
    panel("Delivery latency (publish → socket)", quantiles(f"{g}_delivery_latency_seconds"), "s")
    panel(
        "Auth latency",
        quantiles("roomgate_auth_authenticate_seconds")
        + [(e, f"gateway view {lg}") for e, lg in quantiles(f"{g}_auth_latency_seconds")],
        "s",
    )
    panel(
        "Room authorisation latency",
        quantiles("roomauthz_decision_seconds", "method")
        + [(e, f"gateway view {lg}") for e, lg in quantiles(f"{g}_authz_latency_seconds")],
        "s",
    )
    panel(
        "Redis health",
        [(f"min({g}_redis_up{{{SEL}}})", "subscriber up (min over gateways)"),
         rate(f"{g}_redis_reconnects_total", legend="reconnects/s")],
    )  # fmt: skip
    panel(
        "gRPC errors",
        [(
            "sum by (__name__, code) (rate({__name__=~"
            '"(roomgate_auth|roomauthz|roomgate_escalation)_grpc_requests_total", '
            f'code!="OK", {SEL}}}[$__rate_interval]))',
            "{{__name__}} {{code}}",
        )],
        "ops",
    )  # fmt: skip
    panel(
        "Escalations",
        [rate("roomgate_escalation_escalations_fired_total", "severity"),
         *quantiles("roomgate_escalation_timer_lag_seconds", qs=(0.99,))],
    )  # fmt: skip
    panel(
        "Gateways draining / policy generation",
        [(f"sum({g}_draining{{{SEL}}})", "draining"),
         (f"max({g}_policy_generation{{{SEL}}})", "policy generation")],
    )  # fmt: skip
    return {
        "title": "Roomgate",
        "uid": "roomgate-overview",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "tags": ["roomgate"],
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {
                    "name": "namespace",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": f"label_values({g}_connections, namespace)",
                    "refresh": 2,
                },
            ]
        },
        "panels": panels,
    }


def main(argv: list[str]) -> int:
    text = json.dumps(build(), indent=1) + "\n"
    if "--check" in argv:
        return 0 if TARGET.exists() and TARGET.read_text() == text else 1
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
