"""The GatewayPolicy resource as values (pure: no kopf, kubernetes or redis here).

``parse_spec`` turns a ``spec`` mapping into a ``PolicySpec`` and raises ``InvalidPolicy`` for
what the CRD's schema cannot (or, on a cluster that lost the CEL rules, did not) reject;
``owner`` picks the one policy that governs a Deployment when several name it;
``set_condition`` keeps ``status.conditions`` the way Kubernetes conventions want them
(``lastTransitionTime`` moves only when the status changes); ``applied_generation`` is the
minimum generation the live gateways report.

Raises ``InvalidPolicy`` (``roomgate_operator.errors``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from roomgate_operator.errors import InvalidPolicy

# The CRD's spec.limits names, with the range the gateway accepts (roomgate_gateway.limits
# POLICY_FIELDS) intersected with the CRD's. Only integers: the CRD declares them so.
LIMIT_RANGES: dict[str, tuple[int, int]] = {
    "maxConnectionsPerIp": (1, 1_000_000),
    "maxConnectionsPerUser": (1, 1_000_000),
    "messagesPerUserPerMinute": (1, 1_000_000),
    "maxMessageBytes": (256, 16 << 20),
    "maxSubscriptionsPerConnection": (1, 100_000),
    "heartbeatIntervalSeconds": (1, 3600),
    "heartbeatTimeoutSeconds": (1, 7200),
    "authDeadlineSeconds": (1, 300),
    "outboundQueueSize": (1, 1_000_000),
}

# spec.scaling name -> (ScalingSpec attribute, lowest, highest).
SCALING_RANGES: dict[str, tuple[str, int, int]] = {
    "minReplicas": ("min_replicas", 1, 1000),
    "maxReplicas": ("max_replicas", 1, 1000),
    "targetConnectionsPerPod": ("target_connections_per_pod", 1, 10_000_000),
    "scaleUpStabilizationSeconds": ("scale_up_window", 0, 3600),
    "scaleDownStabilizationSeconds": ("scale_down_window", 0, 86_400),
    "maxPodsRemovedPerStep": ("max_pods_removed_per_step", 1, 1000),
    "drainTimeoutSeconds": ("drain_timeout", 0, 86_400),
}


@dataclass(frozen=True, slots=True)
class ScalingSpec:
    """spec.scaling with its defaults (the same as the CRD documents)."""

    min_replicas: int = 1
    max_replicas: int = 10
    target_connections_per_pod: int = 10_000
    scale_up_window: int = 0
    scale_down_window: int = 300
    max_pods_removed_per_step: int = 1
    drain_timeout: int = 30


@dataclass(frozen=True, slots=True)
class PolicySpec:
    target: str
    limits: dict[str, int] = field(default_factory=dict)
    scaling: ScalingSpec | None = None


def _integer(where: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPolicy("InvalidValue", f"{where} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise InvalidPolicy("OutOfRange", f"{where} must be within [{low}, {high}], got {value}")
    return value


def parse_spec(spec: Mapping[str, Any]) -> PolicySpec:
    """The policy as values; ``InvalidPolicy`` names the first field that is wrong."""
    target_ref = spec.get("targetRef")
    if not isinstance(target_ref, Mapping) or not target_ref.get("name"):
        raise InvalidPolicy("InvalidTarget", "spec.targetRef.name is required")
    if target_ref.get("kind", "Deployment") != "Deployment" or target_ref.get(
        "apiVersion", "apps/v1"
    ) != ("apps/v1"):
        raise InvalidPolicy("InvalidTarget", "spec.targetRef must be an apps/v1 Deployment")

    raw_limits = spec.get("limits") or {}
    if not isinstance(raw_limits, Mapping):
        raise InvalidPolicy("InvalidValue", "spec.limits must be an object")
    limits: dict[str, int] = {}
    for key, value in raw_limits.items():
        if key not in LIMIT_RANGES:
            raise InvalidPolicy("UnknownField", f"spec.limits.{key} is not a gateway limit")
        low, high = LIMIT_RANGES[key]
        limits[key] = _integer(f"spec.limits.{key}", value, low, high)
    interval = limits.get("heartbeatIntervalSeconds")
    timeout = limits.get("heartbeatTimeoutSeconds")
    if interval is not None and timeout is not None and timeout <= interval:
        raise InvalidPolicy(
            "InvalidHeartbeat",
            "spec.limits.heartbeatTimeoutSeconds must be greater than heartbeatIntervalSeconds",
        )

    scaling: ScalingSpec | None = None
    raw_scaling = spec.get("scaling")
    if raw_scaling is not None:
        if not isinstance(raw_scaling, Mapping):
            raise InvalidPolicy("InvalidValue", "spec.scaling must be an object")
        values: dict[str, int] = {}
        for key, value in raw_scaling.items():
            if key not in SCALING_RANGES:
                raise InvalidPolicy("UnknownField", f"spec.scaling.{key} is not a scaling field")
            attr, low, high = SCALING_RANGES[key]
            values[attr] = _integer(f"spec.scaling.{key}", value, low, high)
        scaling = ScalingSpec(**values)
        if scaling.min_replicas > scaling.max_replicas:
            raise InvalidPolicy(
                "InvalidReplicaBounds",
                f"spec.scaling.minReplicas ({scaling.min_replicas}) exceeds maxReplicas "
                f"({scaling.max_replicas})",
            )
    return PolicySpec(target=str(target_ref["name"]), limits=limits, scaling=scaling)


@dataclass(frozen=True, slots=True, order=True)
class PolicyRef:
    """Enough of a GatewayPolicy to decide which one governs a target."""

    created: str  # metadata.creationTimestamp (RFC 3339, sorts as text)
    name: str
    target: str


def owner(policies: Iterable[PolicyRef]) -> PolicyRef | None:
    """The policy that governs the gateways: the oldest one (then by name).

    Every gateway reads one live policy (one Redis key), so the operator serves one
    GatewayPolicy per namespace: a second one would fight the first, whatever Deployment it
    names; it is Degraded (reason ``Conflict``) instead."""
    ordered = sorted(policies)
    return ordered[0] if ordered else None


# --- status -------------------------------------------------------------------------------


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    *,
    now: str,
    generation: int,
) -> list[dict[str, Any]]:
    """``conditions`` with ``type_`` set; its lastTransitionTime moves only when the status
    does (``None`` means Unknown). Order of the other conditions is kept."""
    text = "Unknown" if status is None else ("True" if status else "False")
    fresh = {
        "type": type_,
        "status": text,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": now,
    }
    result: list[dict[str, Any]] = []
    found = False
    for cond in conditions:
        if cond.get("type") != type_:
            result.append(dict(cond))
            continue
        found = True
        unchanged = cond.get("status") == text
        result.append(
            {**fresh, "lastTransitionTime": cond.get("lastTransitionTime", now)}
            if unchanged
            else fresh
        )
    if not found:
        result.append(fresh)
    return result


@dataclass(frozen=True, slots=True)
class GatewayReport:
    """One live gateway's presence (keys.gateway_presence)."""

    connections: int
    applied_generation: int
    draining: bool


def parse_presence(raw: Mapping[bytes, bytes]) -> GatewayReport | None:
    """A presence hash as values; ``None`` when it is missing or malformed."""
    try:
        return GatewayReport(
            connections=max(0, int(raw[b"connections"])),
            applied_generation=int(raw.get(b"applied_generation", b"0")),
            draining=raw.get(b"draining", b"0") not in (b"0", b""),
        )
    except (KeyError, ValueError):
        return None


def applied_generation(reports: Iterable[GatewayReport]) -> int | None:
    """The generation every live gateway has applied (their minimum); ``None`` without any."""
    generations = [r.applied_generation for r in reports]
    return min(generations) if generations else None
