"""Connection-based replica computation and the scale-down choreography (pure).

The algorithm (docs/operator.md):

1. ``recommend``: ``ceil(total connections / targetConnectionsPerPod)`` within
   ``[minReplicas, maxReplicas]``.
2. ``stabilize``: the HorizontalPodAutoscaler's behaviour. Every tick's recommendation is kept
   for the longer of the two windows; scaling *up* goes to the lowest recommendation of the
   up window (a one-tick spike does not add pods when the window is > 0; with the window at
   0 it scales up at once), scaling *down* goes only to the highest recommendation of the down
   window (no scale-down until the load has stayed low for the whole window).
3. ``decide``: a scale-down removes at most ``maxPodsRemovedPerStep`` pods per step, and first
   drains them: the emptiest pods are chosen (``pick_victims``), get the lowest
   ``controller.kubernetes.io/pod-deletion-cost`` (``deletion_costs``) so that the ReplicaSet
   deletes exactly them, and are asked to drain; the replicas are lowered once they report
   no connections or ``drainTimeoutSeconds`` has passed.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from roomgate_operator.policy import ScalingSpec

# controller.kubernetes.io/pod-deletion-cost is an int32.
MAX_DELETION_COST = 2**31 - 1
VICTIM_DELETION_COST = -1


@dataclass(frozen=True, slots=True)
class Sample:
    """One tick's recommendation."""

    time: float
    replicas: int


@dataclass(frozen=True, slots=True)
class PodLoad:
    """A pod of the target Deployment and what its gateway reports (``reporting`` False:
    no live presence, e.g. still starting)."""

    name: str
    connections: int = 0
    draining: bool = False
    reporting: bool = True


@dataclass(frozen=True, slots=True)
class PendingDrain:
    """A scale-down in progress (kept in ``status.scaleDown``)."""

    replicas: int
    pods: tuple[str, ...]
    started: float


class Action(Enum):
    NONE = "none"  # replicas are right
    SCALE = "scale"  # set the replicas to ``replicas`` now (up, or a drained step down)
    DRAIN = "drain"  # start a drain of ``victims``, then step down to ``replicas``
    WAIT = "wait"  # a drain is in progress


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    replicas: int
    victims: tuple[str, ...] = ()
    costs: dict[str, int] = field(default_factory=dict)
    reason: str = ""


def recommend(total_connections: int, spec: ScalingSpec) -> int:
    """``ceil(total / target)`` within the replica bounds."""
    wanted = math.ceil(max(0, total_connections) / spec.target_connections_per_pod)
    return min(spec.max_replicas, max(spec.min_replicas, wanted))


def prune(history: Sequence[Sample], now: float, spec: ScalingSpec) -> list[Sample]:
    """The samples still inside the longer window (the newest is always kept)."""
    keep = max(spec.scale_up_window, spec.scale_down_window)
    kept = [s for s in history if now - s.time <= keep]
    if not kept and history:
        kept = [history[-1]]
    return kept


def stabilize(history: Sequence[Sample], now: float, current: int, spec: ScalingSpec) -> int:
    """The replicas the HPA's stabilisation windows allow, given the recommendations in
    ``history`` (the latest included) and the current replicas."""
    if not history:
        return current
    latest = history[-1].replicas
    up = min([latest] + [s.replicas for s in history if now - s.time <= spec.scale_up_window])
    down = max([latest] + [s.replicas for s in history if now - s.time <= spec.scale_down_window])
    replicas = current
    if replicas < up:
        replicas = up
    if replicas > down:
        replicas = down
    return replicas


def target_replicas(stabilized: int, current: int, spec: ScalingSpec) -> int:
    """At most ``maxPodsRemovedPerStep`` fewer than now, always within the bounds (a lowered
    ``maxReplicas`` is honoured at once)."""
    replicas = stabilized
    if replicas < current:
        replicas = max(replicas, current - spec.max_pods_removed_per_step)
    return min(spec.max_replicas, max(spec.min_replicas, replicas))


def pick_victims(pods: Sequence[PodLoad], count: int) -> tuple[str, ...]:
    """The ``count`` pods to remove: already draining first, then the fewest connections
    (then by name, so the choice is stable from one tick to the next)."""
    if count <= 0:
        return ()
    ordered = sorted(pods, key=lambda p: (not p.draining, p.connections, p.name))
    return tuple(p.name for p in ordered[:count])


def deletion_costs(pods: Sequence[PodLoad], victims: Collection[str]) -> dict[str, int]:
    """``controller.kubernetes.io/pod-deletion-cost`` per pod: the connection count (capped
    to int32), and below every other pod for the victims, so the ReplicaSet deletes them."""
    return {
        p.name: VICTIM_DELETION_COST
        if p.name in victims
        else min(MAX_DELETION_COST, max(0, p.connections))
        for p in pods
    }


def decide(
    *,
    desired: int,
    current: int,
    pods: Sequence[PodLoad],
    pending: PendingDrain | None,
    now: float,
    spec: ScalingSpec,
) -> Decision:
    """What to do this tick. ``desired`` is ``target_replicas(...)``; ``current`` the
    Deployment's ``spec.replicas``."""
    by_name: Mapping[str, PodLoad] = {p.name: p for p in pods}
    if pending is not None:
        # A drain was started: it is finished when every victim is gone or empty, or when
        # the drain timeout has passed. It is never cancelled (a drained gateway reports not
        # ready until it stops), so the step down happens and a later tick may scale up.
        left = [n for n in pending.pods if n in by_name and by_name[n].connections > 0]
        replicas = min(current, pending.replicas)
        if not left or now - pending.started >= spec.drain_timeout:
            costs = deletion_costs(pods, pending.pods)
            why = "drained" if not left else f"drain timeout with {len(left)} pod(s) not empty"
            if replicas == current:
                return Decision(Action.NONE, current, pending.pods, costs, why)
            return Decision(Action.SCALE, replicas, pending.pods, costs, why)
        return Decision(Action.WAIT, current, pending.pods, {}, f"draining {', '.join(left)}")
    if desired > current:
        return Decision(Action.SCALE, desired, (), {}, f"scale up {current} -> {desired}")
    if desired < current:
        victims = pick_victims(pods, current - desired)
        costs = deletion_costs(pods, victims)
        if not victims:
            # No pod objects seen (nothing to drain): the ReplicaSet chooses.
            return Decision(Action.SCALE, desired, (), costs, f"scale down {current} -> {desired}")
        return Decision(
            Action.DRAIN, desired, victims, costs, f"drain {', '.join(victims)} then {desired}"
        )
    return Decision(Action.NONE, current, (), {}, "")
