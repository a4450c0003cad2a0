"""Prometheus metrics of one escalation replica (its own ``CollectorRegistry``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from roomgate_escalation.policy import ACTIVE_STATES, SEVERITIES

PREFIX = "roomgate_escalation"


class EscalationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.alerts = Gauge(
            f"{PREFIX}_alerts",
            "Active alerts by state, cluster-wide (every replica reports the same figure)",
            ["state"],
            registry=registry,
        )
        for state in ACTIVE_STATES:
            self.alerts.labels(state.value)
        self.transitions = Counter(
            f"{PREFIX}_transitions",
            "Alert state changes made by this replica, by new state",
            ["state"],
            registry=registry,
        )
        self.triggers = Counter(
            f"{PREFIX}_triggers",
            "Triggers handled by this replica, by source (grpc, bus) and outcome",
            ["source", "outcome"],
            registry=registry,
        )
        self.escalations = Counter(
            f"{PREFIX}_escalations_fired",
            "Escalation levels fired (published) by this replica, by severity",
            ["severity"],
            registry=registry,
        )
        for severity in SEVERITIES:  # exported at 0: rate() and increase() see the first fire
            self.escalations.labels(severity)
        self.timer_lag = Histogram(
            f"{PREFIX}_timer_lag_seconds",
            "Fire time minus due time of each escalation level (Redis clock)",
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.recoveries = Counter(
            f"{PREFIX}_fire_recoveries",
            "Levels taken over from a replica that claimed them and did not finish, by how "
            "each room was handled (skipped: already published; published; ambiguous: history "
            "trimmed, published again)",
            ["room_outcome"],
            registry=registry,
        )
        self.claims_lost = Counter(
            f"{PREFIX}_claims_lost",
            "Claimed timers this replica gave up (lease lost, alert closed meanwhile)",
            registry=registry,
        )
        self.bus_entries = Counter(
            f"{PREFIX}_bus_entries",
            "Entries of the alerts stream handled, by outcome (applied, duplicate: applied "
            "before, skipped: not an alert_triggered of a backend, invalid, reclaimed: taken "
            "over from another consumer)",
            ["outcome"],
            registry=registry,
        )
