"""Write charts/roomgate/files/dashboard.json, the Grafana dashboard the chart ships.

Metric names are the services' own (grep `Counter(`/`Gauge(`/`Histogram(` in
services/*/src/*/metrics.py and server.py): roomgate_gateway_*, roomgate_auth_*,
roomgate_roomauthz_*, roomgate_escalation_*, roomgate_operator_*.

    .venv/bin/python tools/kube/gen_dashboard.py [--check]
"""

# ruff: noqa: E501 - PromQL reads better on one line than split across string fragments

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TARGET = Path(__file__).resolve().parents[2] / "charts" / "roomgate" / "files" / "dashboard.json"
# Every query is scoped to one release (the ServiceMonitor's `release` relabeling: two releases
# in one namespace stay apart); gateway panels also to the chosen gateway pods.
SEL = 'namespace="$namespace", release="$release"'
GW = f'{SEL}, pod=~"$pod"'


def quantiles(
    metric: str, by: str = "", qs: tuple[float, ...] = (0.5, 0.99), sel: str = SEL
) -> list[tuple[str, str]]:
    group = f"le, {by}" if by else "le"
    label = f"{{{{{by}}}}} " if by else ""
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) "
            f"(rate({metric}_bucket{{{sel}}}[$__rate_interval])))",
            f"{label}p{int(q * 100)}",
        )
        for q in qs
    ]


def rate(metric: str, by: str = "", legend: str = "", sel: str = SEL) -> tuple[str, str]:
    return (
        f"sum{f' by ({by})' if by else ''} (rate({metric}{{{sel}}}[$__rate_interval]))",
        legend or (f"{{{{{by}}}}}" if by else metric),
    )


def build() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    at = {"y": 0, "col": 0}  # the next free line, and the half of it (two panels a line)

    def row(title: str) -> None:
        if at["col"]:
            at["y"], at["col"] = at["y"] + 8, 0
        panels.append(
            {"id": len(panels) + 1, "type": "row", "title": title, "collapsed": False,
             "gridPos": {"x": 0, "y": at["y"], "w": 24, "h": 1}, "panels": []}
        )  # fmt: skip
        at["y"] += 1

    def panel(
        title: str, exprs: list[tuple[str, str]], unit: str = "short", description: str = ""
    ) -> None:
        panels.append(
            {
                "id": len(panels) + 1,
                "type": "timeseries",
                "title": title,
                "description": description,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"x": 12 * at["col"], "y": at["y"], "w": 12, "h": 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                            "tooltip": {"mode": "multi"}},
                "targets": [
                    {"refId": chr(65 + i), "expr": e, "legendFormat": legend}
                    for i, (e, legend) in enumerate(exprs)
                ],
            }
        )  # fmt: skip
        if at["col"]:
            at["y"], at["col"] = at["y"] + 8, 0
        else:
            at["col"] = 1

    g = "roomgate_gateway"
    row("Connections")
    panel(
        "Active connections per gateway",
        [(f"sum by (pod) ({g}_connections{{{GW}}})", "{{pod}}"),
         (f"sum({g}_connections{{{GW}}})", "total")],
    )  # fmt: skip
    panel(
        "Connection establishment rate by outcome",
        [rate(f"{g}_connects_total", "outcome", sel=GW)],
        "ops",
        "Connection attempts per second: ok, or why they were refused.",
    )
    panel(
        "Connection duration",
        quantiles(f"{g}_connection_duration_seconds", sel=GW, qs=(0.5, 0.9, 0.99)),
        "s",
        "Lifetime of authenticated connections, observed when they close.",
    )
    panel(
        "Reconnections (subscribe with since)",
        [rate(f"{g}_recoveries_total", "outcome", sel=GW)],
        "ops",
        "recovered: the gap was replayed from history; not_recovered: it was no longer there.",
    )
    panel(
        "Closes by code",
        [rate(f"{g}_closes_total", "code", sel=GW)],
        "ops",
        "1000 normal, 1008 policy/rate, 1011 internal, 1012 restart, 1013 try again later.",
    )
    panel(
        "Slow-consumer closes",
        [rate(f"{g}_slow_consumer_closes_total", "pod", sel=GW)],
        "ops",
    )
    row("Messages")
    panel(
        "Messages per second",
        [rate(f"{g}_deliveries_total", legend="delivered to sockets", sel=GW),
         rate(f"{g}_messages_in_total", legend="received from clients", sel=GW),
         rate(f"{g}_messages_out_total", legend="sent by the gateway", sel=GW)],
        "ops",
    )  # fmt: skip
    panel(
        "Delivery latency (publish → socket)",
        quantiles(f"{g}_delivery_latency_seconds", sel=GW),
        "s",
    )
    panel(
        "Outbound queue depth",
        [(f"sum by (pod) ({g}_queue_depth{{{GW}}})", "{{pod}}")],
    )
    panel(
        "Failed deliveries by reason",
        [rate(f"{g}_drops_total", "reason", sel=GW)],
        "ops",
        "Messages not delivered: slow_consumer, closed, expired, mailbox_full, malformed, ack_timeout.",
    )
    panel(
        "Failed delivery ratio",
        [(f"sum (rate({g}_drops_total{{{GW}}}[$__rate_interval])) / "
          f"clamp_min(sum (rate({g}_deliveries_total{{{GW}}}[$__rate_interval])), 1)",
          "dropped / delivered")],
        "percentunit",
    )  # fmt: skip
    panel(
        "Errors sent to clients by code",
        [rate(f"{g}_errors_total", "code", sel=GW)],
        "ops",
    )
    row("Resources")
    panel(
        "Memory per connection",
        [(f"sum by (pod) (process_resident_memory_bytes{{{GW}, app_kubernetes_io_component=\"gateway\"}}) "
          f"/ sum by (pod) (clamp_min({g}_connections{{{GW}}}, 1))", "{{pod}}")],
        "bytes",
        "Resident memory of the gateway process over its open connections.",
    )  # fmt: skip
    panel(
        "CPU per gateway",
        [(f"sum by (pod) (rate(process_cpu_seconds_total{{{GW}, app_kubernetes_io_component=\"gateway\"}}[$__rate_interval]))",
          "{{pod}}")],
        "percentunit",
    )  # fmt: skip
    panel(
        "Event-loop lag per gateway",
        quantiles(f"{g}_event_loop_lag_seconds", "pod", qs=(0.99,), sel=GW),
        "s",
        "How late each gateway's event loop ran a timer: the wait every frame, probe and "
        "publish sees on top of its own work. Seconds here make readiness probes miss.",
    )
    panel(
        "Bandwidth",
        [rate(f"{g}_received_bytes_total", legend="in (client messages)", sel=GW),
         rate(f"{g}_sent_bytes_total", legend="out (to client sockets)", sel=GW)],
        "Bps",
        "Message payload, uncompressed, without WebSocket framing.",
    )  # fmt: skip
    panel(
        "Redis memory",
        [(f'max by (field) ({g}_redis_memory_bytes{{{SEL}, field=~"used|rss|peak"}})', "{{field}}")],
        "bytes",
        "Redis INFO memory, read by the gateways at each scrape (max over gateways).",
    )  # fmt: skip
    panel(
        "File descriptors and rooms (saturation)",
        [(f"max by (pod) (process_open_fds{{{GW}, app_kubernetes_io_component=\"gateway\"}} "
          f"/ process_max_fds{{{GW}, app_kubernetes_io_component=\"gateway\"}})", "{{pod}} fds"),
         (f"max by (pod) ({g}_rooms{{{GW}}} / {g}_max_rooms{{{GW}}})", "{{pod}} rooms")],
        "percentunit",
    )  # fmt: skip
    row("Dependencies")
    panel(
        "Auth latency",
        quantiles("roomgate_auth_authenticate_seconds")
        + [(e, f"gateway view {lg}") for e, lg in quantiles(f"{g}_auth_latency_seconds", sel=GW)],
        "s",
    )
    panel(
        "Room authorisation latency",
        quantiles("roomgate_roomauthz_decision_seconds", "method")
        + [(e, f"gateway view {lg}") for e, lg in quantiles(f"{g}_authz_latency_seconds", sel=GW)],
        "s",
    )
    panel(
        "Redis and auth health",
        [(f"min({g}_redis_up{{{GW}}})", "redis subscriber up (min over gateways)"),
         rate(f"{g}_redis_reconnects_total", legend="redis reconnects/s", sel=GW),
         (f"max({g}_auth_breaker_open{{{GW}}})", "auth breaker open (max over gateways)")],
    )  # fmt: skip
    panel(
        "gRPC requests by service and code",
        [(
            "sum by (__name__, code) (rate({__name__=~"
            '"(roomgate_auth|roomgate_roomauthz|roomgate_escalation)_grpc_requests_total", '
            f"{SEL}}}[$__rate_interval]))",
            "{{__name__}} {{code}}",
        )],
        "ops",
    )  # fmt: skip
    panel(
        "Escalations",
        [rate("roomgate_escalation_escalations_fired_total", "severity"),
         *quantiles("roomgate_escalation_timer_lag_seconds", qs=(0.99,))],
    )  # fmt: skip
    row("Operator and policy")
    panel(
        "Policy generation: wanted vs applied",
        [("max by (policy) (roomgate_operator_policy_generation{" + SEL + "})", "{{policy}} wanted"),
         ("max by (policy) (roomgate_operator_applied_generation{" + SEL + "})", "{{policy}} applied by all"),
         (f"max by (pod) ({g}_policy_generation{{{GW}}})", "{{pod}} in force")],
    )  # fmt: skip
    panel(
        "Scaling decisions",
        [("max by (policy) (roomgate_operator_desired_replicas{" + SEL + "})", "{{policy}} desired"),
         ("max by (policy) (roomgate_operator_current_replicas{" + SEL + "})", "{{policy}} current"),
         ("sum by (direction) (increase(roomgate_operator_scale_events_total{" + SEL + "}[$__range]))",
          "scale {{direction}} (in range)")],
    )  # fmt: skip
    panel(
        "Drain",
        [("sum (increase(roomgate_operator_drains_total{" + SEL + "}[$__range]))",
          "drain commands (in range)"),
         (f"sum({g}_draining{{{GW}}})", "gateways draining")],
    )  # fmt: skip
    panel(
        "Observed connections and live gateways",
        [("max by (policy) (roomgate_operator_observed_connections{" + SEL + "})", "{{policy}} connections"),
         ("max by (policy) (roomgate_operator_live_gateways{" + SEL + "})", "{{policy}} live gateways")],
    )  # fmt: skip

    def variable(name: str, query: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "label": name,
            "type": "query",
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "query": query,
            "definition": query,
            "refresh": 2,
            "sort": 1,
            **extra,
        }

    return {
        "title": "Roomgate",
        "uid": "roomgate-overview",
        "schemaVersion": 39,
        "version": 2,
        "editable": True,
        "tags": ["roomgate"],
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {"name": "datasource", "label": "datasource", "type": "datasource",
                 "query": "prometheus"},
                variable("namespace", f"label_values({g}_connections, namespace)"),
                variable("release", f'label_values({g}_connections{{namespace="$namespace"}}, release)'),
                variable(
                    "pod",
                    f'label_values({g}_connections{{namespace="$namespace", release="$release"}}, pod)',
                    multi=True, includeAll=True, allValue=".*",
                ),
            ]
        },
        "panels": panels,
    }  # fmt: skip


def main(argv: list[str]) -> int:
    text = json.dumps(build(), indent=1) + "\n"
    if "--check" in argv:
        return 0 if TARGET.exists() and TARGET.read_text() == text else 1
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
