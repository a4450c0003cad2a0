"""The operator's Prometheus metrics (its own registry; served on ``/metrics`` at
``ROOMGATE_METRICS_LISTEN``), labelled by policy (``namespace/name``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        p = "roomgate_operator"
        self.connections = Gauge(
            f"{p}_observed_connections",
            "Connections over the target's pods",
            ["policy"],
            registry=r,
        )
        self.live_gateways = Gauge(
            f"{p}_live_gateways",
            "Gateways of the target reporting presence",
            ["policy"],
            registry=r,
        )
        self.desired = Gauge(
            f"{p}_desired_replicas", "Replicas the policy wants now", ["policy"], registry=r
        )
        self.current = Gauge(
            f"{p}_current_replicas", "spec.replicas of the target", ["policy"], registry=r
        )
        self.generation = Gauge(
            f"{p}_policy_generation", "metadata.generation of the policy", ["policy"],
            registry=r,
        )  # fmt: skip
        self.applied = Gauge(
            f"{p}_applied_generation", "Policy generation every live gateway applied", ["policy"],
            registry=r,
        )  # fmt: skip
        self.scales = Counter(
            f"{p}_scale_events", "Changes of the target's replicas", ["policy", "direction"],
            registry=r,
        )  # fmt: skip
        self.drains = Counter(
            f"{p}_drains", "Drain commands sent to gateways", ["policy"], registry=r
        )
        self.publishes = Counter(
            f"{p}_policy_publishes", "Live policy writes to Redis", ["policy"], registry=r
        )
        self.errors = Counter(
            f"{p}_reconcile_errors", "Failed reconciles, by kind", ["kind"], registry=r
        )
