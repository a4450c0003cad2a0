"""Typed settings of the escalation service (every field is ``ROOMGATE_<FIELD>``)."""

from __future__ import annotations

import json
import os
import socket
import tomllib
from pathlib import Path

from pydantic import Field
from roomgate_common.errors import ConfigurationError
from roomgate_common.settings import ServiceSettings

from roomgate_escalation.errors import InvalidAlert
from roomgate_escalation.policy import DEFAULT_MAX_ALERT_BYTES, DEFAULT_MAX_DELAY, PolicyConfig


def _default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class EscalationSettings(ServiceSettings):
    # gRPC listen address.
    escalation_listen: str = "127.0.0.1:50053"
    # Policy file (TOML, or JSON when it ends in .json); empty: no policies (per-alert
    # actions only).
    escalation_policy_file: str = ""
    # Consumer group on the history stream of room `alerts`, and this replica's name in it.
    escalation_consumer_group: str = "escalation"
    escalation_consumer_name: str = Field(default_factory=_default_consumer)
    # A bus entry pending this long (ms) with a dead consumer is reclaimed (XAUTOCLAIM).
    escalation_reclaim_idle_ms: int = Field(default=30_000, ge=100)
    # How often this replica looks for reclaimable bus entries (seconds).
    escalation_reclaim_interval: float = Field(default=5.0, gt=0)
    # Lease (ms) of a claimed timer: a replica dying after claiming delays that escalation
    # by at most this much (plus the poll interval).
    escalation_lease_ms: int = Field(default=30_000, ge=200)
    # Longest sleep of the timer loop between looks at the due set (seconds).
    escalation_poll_interval: float = Field(default=0.25, gt=0, le=60)
    # Timers claimed per look, and escalations fired concurrently by one replica.
    escalation_claim_batch: int = Field(default=64, ge=1, le=1000)
    escalation_fire_concurrency: int = Field(default=32, ge=1, le=1000)
    # The `sender` of the events this service publishes; bus triggers from it are skipped.
    escalation_sender: str = "escalation"
    # Callers: every EscalationService call needs a service token (verified by the auth
    # service at auth_addr) with this permission. See roomgate_escalation.callers.
    auth_addr: str = "127.0.0.1:50051"
    auth_timeout: float = Field(default=2.0, gt=0)
    escalation_permission: str = Field(default="escalation", min_length=1)
    # Limits.
    escalation_max_delay: float = Field(default=DEFAULT_MAX_DELAY, gt=0)
    escalation_max_alert_bytes: int = Field(default=DEFAULT_MAX_ALERT_BYTES, ge=256)
    escalation_max_active_alerts: int = Field(default=100_000, ge=1)
    escalation_timeline_max: int = Field(default=100, ge=4, le=10_000)
    # Resolved alerts (and their timelines) are deleted this many seconds after resolving.
    escalation_resolved_retention: int = Field(default=7 * 24 * 3600, ge=1)
    # Chaos testing only: seconds a replica waits after claiming a timer ("before_publish")
    # or after publishing it ("after_publish") before going on. Never set in production.
    escalation_chaos_pause: float = Field(default=0.0, ge=0)
    escalation_chaos_phase: str = ""

    def policy_config(self) -> PolicyConfig:
        """Read and validate the policy file (raises ``ConfigurationError`` naming it)."""
        raw: dict[str, object] = {}
        if self.escalation_policy_file:
            path = Path(self.escalation_policy_file)
            try:
                text = path.read_text()
                raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
            except (OSError, ValueError) as exc:
                raise ConfigurationError(
                    f"ROOMGATE_ESCALATION_POLICY_FILE: cannot read {path}: {exc}"
                ) from None
        try:
            return PolicyConfig.from_mapping(
                raw,
                max_delay=self.escalation_max_delay,
                max_alert_bytes=self.escalation_max_alert_bytes,
            )
        except InvalidAlert as exc:
            raise ConfigurationError(f"ROOMGATE_ESCALATION_POLICY_FILE: {exc}") from None
