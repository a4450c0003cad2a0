"""One GatewayPolicy's reconcile: level-based, idempotent, driven by kopf (handlers.py).

Every tick reads the world (the policy, the target Deployment and its pods, the gateways'
presence in Redis), computes what it should be (pure: policy.py, scaling.py), changes only
what differs (the live policy in Redis, the ConfigMap, pod deletion costs, drain commands,
the scale subresource) and writes ``status``. Running it twice changes nothing the second
time; a restarted operator continues from ``status`` (a drain in progress, lastScaleTime).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio.client import V1OwnerReference

from roomgate_operator import scaling
from roomgate_operator.bus import PolicyBus, encode_limits
from roomgate_operator.errors import InvalidPolicy, NotFound
from roomgate_operator.kube import DELETION_COST, KubeClient, Target
from roomgate_operator.metrics import OperatorMetrics
from roomgate_operator.policy import (
    GatewayReport,
    PolicySpec,
    applied_generation,
    owner,
    parse_spec,
    set_condition,
)
from roomgate_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

API_VERSION = "roomgate.io/v1alpha1"
KIND = "GatewayPolicy"


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class PolicyState:
    """What the operator keeps in memory per policy (kopf's per-object memo): the
    recommendations of the stabilisation windows, and a cache of what it wrote."""

    history: list[scaling.Sample] = field(default_factory=list)
    pending: scaling.PendingDrain | None = None
    loaded: bool = False  # pending/last scale read back from status once
    last_scale: float | None = None
    published_at: float = 0.0
    configmap: tuple[int, str] | None = None
    # The change handlers and the timer of one policy run concurrently: one at a time.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True, slots=True)
class Meta:
    namespace: str
    name: str
    uid: str
    generation: int

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Meta:
        md = body["metadata"]
        return cls(md["namespace"], md["name"], md.get("uid", ""), int(md.get("generation", 1)))


class Reconciler:
    def __init__(
        self,
        settings: OperatorSettings,
        kube: KubeClient,
        bus: PolicyBus,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.bus = bus
        self.metrics = metrics or OperatorMetrics()

    # -- checks shared by every entry point ----------------------------------------------

    async def _validated(self, meta: Meta, spec: Mapping[str, Any]) -> tuple[PolicySpec, Target]:
        """The policy and its target; InvalidPolicy (a semantic error, or not the namespace's
        governing policy) or NotFound (no such Deployment)."""
        policy = parse_spec(spec)
        governing = owner(await self.kube.policies(meta.namespace))
        if governing is not None and governing.name != meta.name:
            raise InvalidPolicy(
                "Conflict",
                f"GatewayPolicy {governing.name} already governs the gateways of this "
                "namespace (one live policy per Redis)",
            )
        managed = self.settings.gateway_deployment
        if managed and policy.target != managed:
            raise InvalidPolicy(
                "UnmanagedTarget",
                f"this operator's gateways (and Redis) belong to Deployment {managed}, "
                f"not {policy.target}",
            )
        return policy, await self.kube.target(meta.namespace, policy.target)

    async def degrade(
        self, meta: Meta, status: Mapping[str, Any], error: InvalidPolicy | NotFound
    ) -> bool:
        """Report a policy that cannot be applied: Degraded True, Ready False. True when
        the status changed (first report, or another reason)."""
        reason = error.reason if isinstance(error, InvalidPolicy) else "TargetNotFound"
        message = error.message if isinstance(error, InvalidPolicy) else str(error)
        now = rfc3339(time.time())
        conditions = status.get("conditions", [])
        conditions = set_condition(
            conditions, "Degraded", True, reason, message, now=now, generation=meta.generation
        )
        conditions = set_condition(
            conditions, "Ready", False, reason, message, now=now, generation=meta.generation
        )
        new = {"conditions": conditions, "observedGeneration": meta.generation}
        if not _differs(status, new):
            return False
        await self.kube.patch_status(meta.namespace, meta.name, new)
        return True

    # -- limits: on create/update/resume and on every tick ---------------------------------

    async def apply_limits(
        self, body: Mapping[str, Any], state: PolicyState
    ) -> tuple[PolicySpec, Target]:
        """Make Redis (and the ConfigMap) hold this policy's limits. Raises InvalidPolicy or
        NotFound (then nothing is written)."""
        meta = Meta.of(body)
        policy, target = await self._validated(meta, body.get("spec", {}))
        source = f"{meta.namespace}/{meta.name}"
        if await self.bus.write_policy(meta.generation, policy.limits, source):
            state.published_at = time.time()
            self.metrics.publishes.labels(source).inc()
            log.info("live policy %s generation %d published", source, meta.generation)
        encoded = encode_limits(policy.limits)
        if state.configmap != (meta.generation, encoded):
            await self.kube.apply_configmap(
                meta.namespace,
                f"{meta.name}-limits",
                {"limits.json": encoded, "generation": str(meta.generation), "policy": source},
                owner=V1OwnerReference(
                    api_version=API_VERSION,
                    kind=KIND,
                    name=meta.name,
                    uid=meta.uid,
                    controller=True,
                ),
                labels={"app.kubernetes.io/part-of": "roomgate", "roomgate.io/policy": meta.name},
            )
            state.configmap = (meta.generation, encoded)
        return policy, target

    async def forget(self, body: Mapping[str, Any]) -> None:
        """The policy is gone: gateways go back to their own settings (generation 0, no
        overrides), if the live policy is still this one's."""
        meta = Meta.of(body)
        if await self.bus.live_source() == f"{meta.namespace}/{meta.name}":
            await self.bus.write_policy(0, {}, "", force=True)

    # -- the tick --------------------------------------------------------------------------

    async def reconcile(self, body: Mapping[str, Any], state: PolicyState) -> dict[str, Any]:
        """Everything, once. Returns the status written (for tests and logs)."""
        meta = Meta.of(body)
        status: Mapping[str, Any] = body.get("status") or {}
        if not state.loaded:
            state.loaded = True
            state.pending = _pending_from(status.get("scaleDown"))
            if status.get("lastScaleTime"):
                state.last_scale = parse_rfc3339(status["lastScaleTime"])
        try:
            policy, target = await self.apply_limits(body, state)
        except (InvalidPolicy, NotFound) as exc:
            if await self.degrade(meta, status, exc):
                log.warning("%s/%s not applied: %s", meta.namespace, meta.name, exc)
            raise
        pods = await self.kube.pods(meta.namespace, target.selector)
        reports = await self.bus.presence(pods)
        now = time.time()

        applied = applied_generation(reports.values())
        # A gateway that missed the PUBLISH (pub/sub reconnecting) hears it again, at most
        # once per reconcile interval.
        lagging = applied is not None and applied != meta.generation
        if lagging and now - state.published_at >= self.settings.reconcile_interval:
            await self.bus.write_policy(
                meta.generation, policy.limits, f"{meta.namespace}/{meta.name}", force=True
            )
            state.published_at = now

        new: dict[str, Any] = {
            "observedGeneration": meta.generation,
            "observedConnections": sum(r.connections for r in reports.values()),
            "podConnections": {pod: r.connections for pod, r in sorted(reports.items())},
            "liveGateways": len(reports),
            "appliedGeneration": applied,
            "currentReplicas": target.replicas,
        }
        scaling_cond = await self._scale(meta, policy, target, pods, reports, state, now, new)
        new["lastScaleTime"] = rfc3339(state.last_scale) if state.last_scale else None
        new["scaleDown"] = (
            {
                "replicas": state.pending.replicas,
                "pods": list(state.pending.pods),
                "startedAt": rfc3339(state.pending.started),
            }
            if state.pending
            else None
        )
        new["conditions"] = _conditions(
            status.get("conditions", []), meta, reports, applied, scaling_cond, rfc3339(now)
        )
        if _differs(status, new):
            await self.kube.patch_status(meta.namespace, meta.name, new)
        self._observe(f"{meta.namespace}/{meta.name}", new)
        self.metrics.generation.labels(f"{meta.namespace}/{meta.name}").set(meta.generation)
        return new

    def _observe(self, policy: str, status: Mapping[str, Any]) -> None:
        m = self.metrics
        for direction in ("up", "down"):  # exported at 0: increase() sees the first event
            m.scales.labels(policy, direction)
        m.drains.labels(policy)
        m.connections.labels(policy).set(status["observedConnections"])
        m.live_gateways.labels(policy).set(status["liveGateways"])
        m.current.labels(policy).set(status["currentReplicas"])
        if status.get("desiredReplicas") is not None:
            m.desired.labels(policy).set(status["desiredReplicas"])
        if status.get("appliedGeneration") is not None:
            m.applied.labels(policy).set(status["appliedGeneration"])

    async def _scale(
        self,
        meta: Meta,
        policy: PolicySpec,
        target: Target,
        pods: list[str],
        reports: Mapping[str, GatewayReport],
        state: PolicyState,
        now: float,
        new: dict[str, Any],
    ) -> tuple[bool, str, str]:
        """Scale the target if needed; the Scaling condition (status, reason, message)."""
        spec = policy.scaling
        if spec is None or not self.settings.manage_scaling:
            new["desiredReplicas"] = None
            why = "no spec.scaling" if spec is None else "scaling is off in this operator"
            state.history.clear()
            return False, "Disabled", why
        total = new["observedConnections"]
        current = target.replicas
        if not state.history:
            # After a start, behave as if the current size had been recommended for the whole
            # down window: no scale-down before the window has seen the load.
            state.history.append(scaling.Sample(now - spec.scale_down_window, current))
        state.history.append(scaling.Sample(now, scaling.recommend(total, spec)))
        state.history = scaling.prune(state.history, now, spec)
        stabilized = scaling.stabilize(state.history, now, current, spec)
        desired = scaling.target_replicas(stabilized, current, spec)
        new["desiredReplicas"] = desired
        loads = [
            scaling.PodLoad(
                name=pod,
                connections=reports[pod].connections if pod in reports else 0,
                draining=reports[pod].draining if pod in reports else False,
                reporting=pod in reports,
            )
            for pod in pods
        ]
        decision = scaling.decide(
            desired=desired, current=current, pods=loads, pending=state.pending, now=now, spec=spec
        )
        ns, name = meta.namespace, target.name
        if decision.costs:
            await self._set_costs(ns, target.selector, decision.costs)
        if decision.action is scaling.Action.DRAIN:
            for pod in decision.victims:
                heard = await self.bus.drain(pod)
                self.metrics.drains.labels(f"{ns}/{meta.name}").inc()
                log.info("drain sent to %s (%d listener)", pod, heard)
            state.pending = scaling.PendingDrain(decision.replicas, decision.victims, now)
            return True, "Draining", decision.reason
        if decision.action is scaling.Action.WAIT:
            return True, "Draining", decision.reason
        if decision.action is scaling.Action.SCALE:
            await self.kube.scale(ns, name, decision.replicas)
            log.info("scaled %s/%s %d -> %d (%s)", ns, name, current, decision.replicas,
                     decision.reason)  # fmt: skip
            state.pending = None
            state.last_scale = now
            new["currentReplicas"] = decision.replicas
            up = decision.replicas > current
            self.metrics.scales.labels(f"{ns}/{meta.name}", "up" if up else "down").inc()
            return True, "ScaledUp" if up else "ScaledDown", decision.reason
        state.pending = None
        wanted = math.ceil(total / spec.target_connections_per_pod)
        if wanted > spec.max_replicas:
            return False, "AtMaxReplicas", f"{total} connection(s) want {wanted} replicas"
        return False, "Stable", f"{current} replica(s) for {total} connection(s)"

    async def _set_costs(self, namespace: str, selector: str, costs: Mapping[str, int]) -> None:
        current = await self.kube.pod_annotations(namespace, selector)
        for pod, cost in sorted(costs.items()):
            if pod in current and current[pod].get(DELETION_COST) != str(cost):
                await self.kube.annotate_pod(namespace, pod, {DELETION_COST: str(cost)})


def _pending_from(raw: Any) -> scaling.PendingDrain | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        return scaling.PendingDrain(
            replicas=int(raw["replicas"]),
            pods=tuple(str(p) for p in raw.get("pods", [])),
            started=parse_rfc3339(str(raw["startedAt"])),
        )
    except (KeyError, ValueError):
        return None


def _conditions(
    conditions: list[dict[str, Any]],
    meta: Meta,
    reports: Mapping[str, GatewayReport],
    applied: int | None,
    scaling_cond: tuple[bool, str, str],
    now: str,
) -> list[dict[str, Any]]:
    gen = meta.generation
    live = len(reports)
    if applied is None:
        applied_cond: tuple[bool | None, str, str] = (None, "NoGateways", "no live gateway")
    elif applied == gen:
        applied_cond = (True, "AllGatewaysApplied", f"{live} gateway(s) at generation {gen}")
    else:
        behind = sum(1 for r in reports.values() if r.applied_generation != gen)
        applied_cond = (False, "Pending", f"{behind} of {live} gateway(s) not at generation {gen}")
    out = set_condition(conditions, "Applied", *applied_cond, now=now, generation=gen)
    out = set_condition(out, "Scaling", *scaling_cond, now=now, generation=gen)
    out = set_condition(out, "Degraded", False, "AsExpected", "", now=now, generation=gen)
    ready = applied_cond[0] is not False
    out = set_condition(
        out,
        "Ready",
        ready,
        "Reconciled" if ready else "Pending",
        "" if ready else applied_cond[2],
        now=now,
        generation=gen,
    )
    return out


def _differs(status: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """True when a merge patch of ``new`` would change ``status`` (None deletes)."""
    for key, value in new.items():
        if value is None:
            if key in status:
                return True
        elif status.get(key) != value:
            return True
    return False
