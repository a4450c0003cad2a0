"""The pure replica computation: recommendation, HPA-like stabilisation, step limit, victims,
deletion costs and the drain-then-scale decision."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from roomgate_operator.policy import ScalingSpec
from roomgate_operator.scaling import (
    MAX_DELETION_COST,
    Action,
    PendingDrain,
    PodLoad,
    Sample,
    decide,
    deletion_costs,
    pick_victims,
    prune,
    recommend,
    stabilize,
    target_replicas,
)

SPEC = ScalingSpec(
    min_replicas=2,
    max_replicas=10,
    target_connections_per_pod=100,
    scale_up_window=0,
    scale_down_window=60,
    max_pods_removed_per_step=1,
    drain_timeout=30,
)


@st.composite
def specs(draw: st.DrawFn) -> ScalingSpec:
    low = draw(st.integers(1, 20))
    return ScalingSpec(
        min_replicas=low,
        max_replicas=draw(st.integers(low, 40)),
        target_connections_per_pod=draw(st.integers(1, 1000)),
        scale_up_window=draw(st.integers(0, 120)),
        scale_down_window=draw(st.integers(0, 600)),
        max_pods_removed_per_step=draw(st.integers(1, 5)),
        drain_timeout=draw(st.integers(0, 60)),
    )


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Sample], float]:
    """Samples at increasing times, and the time of the last one (now)."""
    gaps = draw(st.lists(st.floats(0.5, 60), min_size=1, max_size=30))
    replicas = draw(st.lists(st.integers(1, 40), min_size=len(gaps), max_size=len(gaps)))
    t, samples = 0.0, []
    for gap, r in zip(gaps, replicas, strict=True):
        t += gap
        samples.append(Sample(t, r))
    return samples, t


def test_recommend_is_ceil_of_connections_over_target_within_bounds() -> None:
    """ceil(total/target), never below min nor above max."""
    assert recommend(0, SPEC) == 2
    assert recommend(301, SPEC) == 4
    assert recommend(400, SPEC) == 4
    assert recommend(10**9, SPEC) == 10


@settings(deadline=None)  # no per-example deadline: the machine is shared
@given(st.integers(0, 10**8), st.integers(0, 10**8), specs())
def test_recommend_is_bounded_and_monotonic(a: int, b: int, spec: ScalingSpec) -> None:
    """More connections never recommend fewer replicas; always within the bounds."""
    low, high = sorted((a, b))
    assert spec.min_replicas <= recommend(low, spec) <= recommend(high, spec) <= spec.max_replicas


def test_scale_up_is_immediate_with_a_zero_up_window() -> None:
    """With scaleUpStabilizationSeconds 0 the latest recommendation wins at once."""
    history = [Sample(0, 2), Sample(5, 2), Sample(10, 7)]
    assert stabilize(history, 10, 2, SPEC) == 7


def test_scale_up_waits_for_the_whole_up_window() -> None:
    """A one-tick spike inside the up window does not add pods (the window's minimum)."""
    spec = ScalingSpec(scale_up_window=30, scale_down_window=60)
    history = [Sample(0, 2), Sample(20, 2), Sample(25, 8)]
    assert stabilize(history, 25, 2, spec) == 2
    history += [Sample(40, 8), Sample(55, 8)]  # sustained: the 2 at t=20 leaves the window
    assert stabilize(history, 55, 2, spec) == 8


def test_scale_down_waits_for_the_whole_down_window() -> None:
    """The highest recommendation of the down window holds the replicas up."""
    history = [Sample(0, 6), Sample(30, 2), Sample(59, 2)]
    assert stabilize(history, 59, 6, SPEC) == 6
    history.append(Sample(61, 2))  # the 6 at t=0 is now older than 60 s
    assert stabilize(history, 61, 6, SPEC) == 2


def test_prune_keeps_the_longer_window_and_the_newest() -> None:
    """Samples older than both windows go; the newest stays even when old."""
    history = [Sample(0, 1), Sample(50, 2), Sample(100, 3)]
    assert prune(history, 100, SPEC) == [Sample(50, 2), Sample(100, 3)]
    assert prune([Sample(0, 1)], 1000, SPEC) == [Sample(0, 1)]


@settings(deadline=None)  # no per-example deadline: the machine is shared
@given(histories(), st.integers(1, 40), specs())
def test_stabilize_moves_only_when_the_whole_window_agrees(
    history: tuple[list[Sample], float], current: int, spec: ScalingSpec
) -> None:
    """Up only if every recommendation of the up window is above the current size, down only
    if every one of the down window is below it; the result is current or a recommendation."""
    samples, now = history
    result = stabilize(samples, now, current, spec)
    up_window = [s.replicas for s in samples if now - s.time <= spec.scale_up_window]
    down_window = [s.replicas for s in samples if now - s.time <= spec.scale_down_window]
    up_window.append(samples[-1].replicas)
    down_window.append(samples[-1].replicas)
    if result > current:
        assert all(r > current for r in up_window)
        assert result == min(up_window)
    if result < current:
        assert all(r < current for r in down_window)
        assert result == max(down_window)
    assert result == current or result in {s.replicas for s in samples}


@settings(deadline=None)  # no per-example deadline: the machine is shared
@given(histories(), specs())
def test_stabilize_with_zero_windows_follows_the_latest(
    history: tuple[list[Sample], float], spec: ScalingSpec
) -> None:
    """Both windows at 0: the latest recommendation, whatever came before."""
    samples, now = history
    spec = ScalingSpec(scale_up_window=0, scale_down_window=0)
    assert stabilize(samples, now, 5, spec) == samples[-1].replicas


@settings(deadline=None)  # no per-example deadline: the machine is shared
@given(st.integers(1, 60), st.integers(1, 60), specs())
def test_target_replicas_removes_at_most_a_step_and_stays_in_bounds(
    stabilized: int, current: int, spec: ScalingSpec
) -> None:
    """Never more than maxPodsRemovedPerStep fewer (inside the bounds); always in bounds."""
    result = target_replicas(stabilized, current, spec)
    assert spec.min_replicas <= result <= spec.max_replicas
    if spec.min_replicas <= current <= spec.max_replicas and result < current:
        assert current - result <= spec.max_pods_removed_per_step
    if stabilized >= current:
        assert result >= min(current, spec.max_replicas)


def test_victims_are_the_emptiest_pods_draining_first() -> None:
    """A draining pod goes first, then the fewest connections, then by name."""
    pods = [
        PodLoad("gw-a", 40),
        PodLoad("gw-b", 3),
        PodLoad("gw-c", 3),
        PodLoad("gw-d", 90, draining=True),
    ]
    assert pick_victims(pods, 1) == ("gw-d",)
    assert pick_victims(pods, 3) == ("gw-d", "gw-b", "gw-c")
    assert pick_victims(pods, 0) == ()


@settings(deadline=None)  # no per-example deadline: the machine is shared
@given(
    st.dictionaries(
        st.text("abcdef", min_size=1, max_size=5).map("gw-".__add__), st.integers(0, 10**10)
    ),
    st.integers(0, 10),
)
def test_deletion_costs_put_victims_first_and_follow_connections(
    conns: dict[str, int], count: int
) -> None:
    """Victims cost less than every other pod; the others cost their connection count
    (int32); the victims are never fuller than a pod that stays."""
    pods = [PodLoad(name, c) for name, c in conns.items()]
    victims = pick_victims(pods, count)
    costs = deletion_costs(pods, victims)
    assert set(costs) == set(conns)
    kept = [p for p in pods if p.name not in victims]
    for v in victims:
        assert all(costs[v] < costs[k.name] for k in kept)
        assert all(conns[v] <= k.connections for k in kept)
    for k in kept:
        assert costs[k.name] == min(conns[k.name], MAX_DELETION_COST)
    assert all(-(2**31) <= c <= MAX_DELETION_COST for c in costs.values())


def test_decide_scales_up_at_once() -> None:
    """More replicas wanted: scale now, no drain."""
    d = decide(desired=5, current=3, pods=[], pending=None, now=0, spec=SPEC)
    assert (d.action, d.replicas) == (Action.SCALE, 5)


def test_decide_drains_then_scales_down() -> None:
    """Fewer replicas wanted: drain the emptiest pod first, scale once it is empty."""
    pods = [PodLoad("gw-a", 50), PodLoad("gw-b", 4), PodLoad("gw-c", 70)]
    d = decide(desired=2, current=3, pods=pods, pending=None, now=100, spec=SPEC)
    assert d.action is Action.DRAIN and d.victims == ("gw-b",) and d.replicas == 2
    assert d.costs == {"gw-a": 50, "gw-b": -1, "gw-c": 70}
    pending = PendingDrain(2, d.victims, 100)
    d = decide(desired=2, current=3, pods=pods, pending=pending, now=110, spec=SPEC)
    assert d.action is Action.WAIT
    empty = [PodLoad("gw-a", 52), PodLoad("gw-b", 0), PodLoad("gw-c", 72)]
    d = decide(desired=2, current=3, pods=empty, pending=pending, now=111, spec=SPEC)
    assert (d.action, d.replicas, d.victims) == (Action.SCALE, 2, ("gw-b",))
    assert d.costs["gw-b"] == -1


def test_decide_scales_down_after_the_drain_timeout() -> None:
    """A pod that is still not empty after drainTimeoutSeconds does not block the step."""
    pods = [PodLoad("gw-a", 50), PodLoad("gw-b", 4)]
    pending = PendingDrain(1, ("gw-b",), 100)
    assert decide(desired=1, current=2, pods=pods, pending=pending, now=129, spec=SPEC).action is (
        Action.WAIT
    )
    d = decide(desired=1, current=2, pods=pods, pending=pending, now=130, spec=SPEC)
    assert (d.action, d.replicas) == (Action.SCALE, 1)


def test_decide_finishes_a_drain_even_if_load_came_back() -> None:
    """A started drain is never cancelled (its gateway is not ready any more): it completes,
    and a later tick scales up again."""
    pods = [PodLoad("gw-a", 500), PodLoad("gw-b", 0)]
    pending = PendingDrain(1, ("gw-b",), 100)
    d = decide(desired=2, current=2, pods=pods, pending=pending, now=101, spec=SPEC)
    assert (d.action, d.replicas) == (Action.SCALE, 1)


@settings(max_examples=100, deadline=None)  # no deadline: the machine is shared
@given(specs(), st.lists(st.integers(0, 20_000), min_size=1, max_size=40), st.integers(1, 40))
def test_a_simulated_run_stays_in_bounds_and_steps_down_gently(
    spec: ScalingSpec, loads: list[int], start: int
) -> None:
    """Ticks of a whole run (drains complete at once): replicas stay within the bounds after
    the first step, and no step removes more than maxPodsRemovedPerStep."""
    current, history, pending = start, [], None
    for tick, total in enumerate(loads):
        now = tick * 10.0
        history.append(Sample(now, recommend(total, spec)))
        history = prune(history, now, spec)
        desired = target_replicas(stabilize(history, now, current, spec), current, spec)
        pods = [PodLoad(f"gw-{i}", total // current) for i in range(current)]
        if pending is not None:
            pods = [PodLoad(p.name, 0) if p.name in pending.pods else p for p in pods]
        d = decide(desired=desired, current=current, pods=pods, pending=pending, now=now, spec=spec)
        if d.action is Action.DRAIN:
            assert len(d.victims) == current - d.replicas
            pending = PendingDrain(d.replicas, d.victims, now)
        elif d.action is Action.SCALE:
            if d.replicas < current and spec.min_replicas <= current <= spec.max_replicas:
                assert current - d.replicas <= spec.max_pods_removed_per_step
            current, pending = d.replicas, None
            assert spec.min_replicas <= current <= spec.max_replicas
        elif d.action is Action.NONE:
            pending = None
