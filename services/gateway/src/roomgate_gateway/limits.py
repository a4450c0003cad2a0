"""The live limits (pure): defaults from settings, overridden by the operator's policy.

The policy is a JSON object with camelCase keys (the GatewayPolicy CRD's ``spec.limits``);
unknown keys and wrong values are ignored one by one (logged by the caller), so a bad field
never takes the whole policy down.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

# CRD field name -> Limits attribute, and the accepted range.
POLICY_FIELDS: dict[str, tuple[str, type, float, float]] = {
    "maxConnectionsPerIp": ("max_connections_per_ip", int, 1, 1_000_000),
    "maxConnectionsPerUser": ("max_connections_per_user", int, 1, 1_000_000),
    "messagesPerUserPerMinute": ("messages_per_user_per_minute", int, 1, 1_000_000),
    "maxMessageBytes": ("max_message_bytes", int, 256, 16 << 20),
    "maxSubscriptionsPerConnection": ("max_subscriptions_per_connection", int, 1, 100_000),
    "heartbeatIntervalSeconds": ("heartbeat_interval", float, 1, 3600),
    "heartbeatTimeoutSeconds": ("heartbeat_timeout", float, 1, 7200),
    "authDeadlineSeconds": ("auth_deadline", float, 0.1, 300),
    "outboundQueueSize": ("outbound_queue_size", int, 1, 1_000_000),
}


@dataclass(frozen=True, slots=True)
class Limits:
    max_connections_per_ip: int
    max_connections_per_user: int
    messages_per_user_per_minute: int
    max_message_bytes: int
    max_subscriptions_per_connection: int
    heartbeat_interval: float
    heartbeat_timeout: float
    auth_deadline: float
    outbound_queue_size: int
    generation: int = 0

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        return cls(
            **{f.name: getattr(settings, f.name) for f in fields(cls) if f.name != "generation"}
        )

    def public(self) -> dict[str, Any]:
        """The limits as sent in ``welcome`` (camelCase, the CRD's names)."""
        return {crd: getattr(self, attr) for crd, (attr, *_rest) in POLICY_FIELDS.items()}


def apply_policy(base: Limits, policy: dict[str, Any], generation: int) -> tuple[Limits, list[str]]:
    """``base`` with every valid field of ``policy`` applied; and the rejected fields."""
    changes: dict[str, Any] = {}
    rejected: list[str] = []
    for key, value in policy.items():
        spec = POLICY_FIELDS.get(key)
        if spec is None:
            rejected.append(key)
            continue
        attr, kind, low, high = spec
        if isinstance(value, bool) or not isinstance(value, int | float):
            rejected.append(key)
            continue
        if kind is int and value != int(value):
            rejected.append(key)
            continue
        if not low <= value <= high:
            rejected.append(key)
            continue
        changes[attr] = kind(value)
    limits = replace(base, **changes, generation=generation)
    if limits.heartbeat_timeout <= limits.heartbeat_interval:
        limits = replace(
            limits,
            heartbeat_interval=base.heartbeat_interval,
            heartbeat_timeout=base.heartbeat_timeout,
        )
        rejected.append("heartbeatTimeoutSeconds")
    return limits, rejected
