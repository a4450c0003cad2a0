"""The pure escalation policy: targets, delays, plans, alert validation, state machine."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from roomgate_escalation.errors import InvalidAlert
from roomgate_escalation.policy import (
    MAX_LEVELS,
    AlertState,
    Level,
    PolicyConfig,
    can_transition,
    canonical_alert_id,
    check_principal,
    due_ms,
    escalation_envelope_id,
    parse_alert,
    plan_from_json,
    plan_to_json,
)

RAW = {
    "default_policy": "standard",
    "targets": {"ops-team": ["team-7"], "leads": ["role-oncall_lead", "user-42"]},
    "policies": {
        "standard": {
            "critical": [
                {"delay": 300, "targets": ["ops-team"]},
                {"delay": 600, "targets": ["leads", "team-7"]},
            ],
            "high": [{"delay": 900, "targets": ["team-8"]}],
        },
        "quiet": {"critical": []},
    },
}
CONFIG = PolicyConfig.from_mapping(RAW)


def alert(**extra: object) -> dict[str, object]:
    return {"alert_id": 789, "severity": "critical", "title": "High CPU", **extra}


def reason(exc: pytest.ExceptionInfo[InvalidAlert]) -> str:
    return exc.value.reason


def test_default_policy_levels_are_cumulative() -> None:
    """Policy delays count from the previous level: 300 then 300+600."""
    parsed = parse_alert(alert(), CONFIG, default_id="x")
    assert parsed.plan == (
        Level(at=300.0, targets=("team-7",)),
        Level(at=900.0, targets=("role-oncall_lead", "user-42", "team-7")),
    )
    assert parsed.policy == "standard"
    assert parsed.alert_id == "789"


def test_protocol_example_actions_override_policy() -> None:
    """The protocol's example action (escalate to ops-team after 300 s) is one level."""
    parsed = parse_alert(
        alert(actions=[{"type": "escalate", "delay": 300, "target": "ops-team"}]),
        CONFIG,
        default_id="x",
    )
    assert parsed.plan == (Level(at=300.0, targets=("team-7",)),)


def test_actions_merge_equal_delays_and_sort() -> None:
    """Actions count from the trigger; equal delays form one level; other types are ignored."""
    parsed = parse_alert(
        alert(
            actions=[
                {"type": "escalate", "delay": 60, "target": "user-1"},
                {"type": "notify", "channel": "mail"},
                {"type": "escalate", "delay": 10, "target": "team-3"},
                {"type": "escalate", "delay": 60.0, "target": "role-dba"},
            ]
        ),
        CONFIG,
        default_id="x",
    )
    assert parsed.plan == (
        Level(at=10.0, targets=("team-3",)),
        Level(at=60.0, targets=("user-1", "role-dba")),
    )


def test_severity_without_levels_and_named_policy() -> None:
    """No levels for the severity means no escalation; a named policy is honoured."""
    assert parse_alert(alert(severity="low"), CONFIG, default_id="x").plan == ()
    assert parse_alert(alert(policy="quiet"), CONFIG, default_id="x").plan == ()
    assert PolicyConfig().plan_for("critical", "", None) == ()


def test_missing_alert_id_uses_default() -> None:
    """An alert without alert_id gets the caller's default id."""
    parsed = parse_alert({"severity": "info", "title": "t"}, CONFIG, default_id="abc-1")
    assert parsed.alert_id == "abc-1"
    assert parsed.data["alert_id"] == "abc-1"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ([], "invalid_alert"),
        (alert(alert_id="a b"), "invalid_alert_id"),
        (alert(alert_id=True), "invalid_alert_id"),
        (alert(alert_id="x" * 129), "invalid_alert_id"),
        (alert(severity="urgent"), "invalid_severity"),
        (alert(title=""), "invalid_title"),
        (alert(title=5), "invalid_title"),
        (alert(title="t" * 513), "too_large"),
        (alert(description="d" * 20000), "too_large"),
        (alert(dedup_key="has space"), "invalid_dedup_key"),
        (alert(policy="nope"), "unknown_policy"),
        (alert(actions="escalate"), "invalid_action"),
        (alert(actions=[{"delay": 1}]), "invalid_action"),
        (alert(actions=[{"type": "escalate", "target": "team-1"}]), "invalid_action"),
        (alert(actions=[{"type": "escalate", "delay": -1, "target": "team-1"}]), "invalid_delay"),
        (
            alert(actions=[{"type": "escalate", "delay": math.nan, "target": "team-1"}]),
            "invalid_delay",
        ),
        (alert(actions=[{"type": "escalate", "delay": 1e12, "target": "team-1"}]), "invalid_delay"),
        (alert(actions=[{"type": "escalate", "delay": "5", "target": "team-1"}]), "invalid_delay"),
        (alert(actions=[{"type": "escalate", "delay": True, "target": "team-1"}]), "invalid_delay"),
        (alert(actions=[{"type": "escalate", "delay": 1, "target": "group-1"}]), "invalid_target"),
        (alert(actions=[{"type": "escalate", "delay": 1, "target": "team-01"}]), "invalid_target"),
        (alert(actions=[{"type": "escalate", "delay": 1, "target": "Role-x"}]), "invalid_target"),
        (alert(actions=[{"type": "escalate", "delay": 1, "target": "alerts"}]), "invalid_target"),
        (alert(actions=[{"type": "escalate", "delay": 1, "target": 7}]), "invalid_target"),
        (
            alert(
                actions=[{"type": "escalate", "delay": i, "target": "team-1"} for i in range(21)]
            ),
            "invalid_action",
        ),
        (alert(blob="x" * 20000), "too_large"),
    ],
)
def test_bad_alerts_are_refused_with_a_reason(data: object, why: str) -> None:
    """Every bad input raises InvalidAlert with a machine-readable reason."""
    with pytest.raises(InvalidAlert) as exc:
        parse_alert(data, CONFIG, default_id="x")
    assert reason(exc) == why


@pytest.mark.parametrize(
    "raw",
    [
        {"unknown": 1},
        {"default_policy": "missing"},
        {"targets": {"team-1": ["team-2"]}},
        {"targets": {"x": ["group-1"]}},
        {"targets": {"x": []}},
        {"policies": {"p": {"urgent": []}}},
        {"policies": {"p": {"critical": [{"delay": 1}]}}},
        {"policies": {"p": {"critical": [{"delay": -5, "targets": ["team-1"]}]}}},
        {"policies": {"p": {"critical": [{"delay": 5, "targets": ["nobody"]}]}}},
        {"policies": {"p": {"critical": [{"delay": 5, "targets": []}]}}},
        {"policies": {"p": {"critical": [{"delay": 1, "targets": ["team-1"]}] * 11}}},
    ],
)
def test_bad_policy_files_are_refused(raw: dict[str, object]) -> None:
    """A policy file with any fault is refused as a whole."""
    with pytest.raises(InvalidAlert):
        PolicyConfig.from_mapping(raw)


def test_ids_and_principals() -> None:
    """Alert ids accept ints and the id grammar; principals are checked."""
    assert canonical_alert_id(789) == "789"
    assert canonical_alert_id("web-1.cpu_high") == "web-1.cpu_high"
    assert check_principal("42") == "42"
    with pytest.raises(InvalidAlert):
        check_principal("")
    with pytest.raises(InvalidAlert):
        check_principal("a b")
    assert escalation_envelope_id("789", 2) == "789:esc:2"


def test_state_machine() -> None:
    """Acknowledged alerts only resolve; resolved is final; escalation only while open."""
    assert can_transition(AlertState.TRIGGERED, AlertState.ESCALATED)
    assert can_transition(AlertState.ESCALATED, AlertState.ACKNOWLEDGED)
    assert can_transition(AlertState.ACKNOWLEDGED, AlertState.RESOLVED)
    assert not can_transition(AlertState.ACKNOWLEDGED, AlertState.ESCALATED)
    assert not can_transition(AlertState.RESOLVED, AlertState.ACKNOWLEDGED)
    assert AlertState.ESCALATED.escalating
    assert not AlertState.ACKNOWLEDGED.escalating
    assert not AlertState.RESOLVED.active


delays = st.floats(min_value=0, max_value=3600, allow_nan=False)
targets = st.sampled_from(["team-1", "team-2", "role-ops", "user-9", "ops-team"])


@given(st.lists(st.tuples(delays, targets), min_size=1, max_size=10))
def test_action_plans_are_ordered_and_complete(actions: list[tuple[float, str]]) -> None:
    """Any valid actions give levels in increasing time that cover every target once per delay."""
    plan = CONFIG.plan_from_actions(
        [{"type": "escalate", "delay": d, "target": t} for d, t in actions]
    )
    ats = [lv.at for lv in plan]
    assert ats == sorted(set(ats))
    assert len(plan) <= MAX_LEVELS
    for delay, target in actions:
        level = next(lv for lv in plan if lv.at == delay)
        assert set(CONFIG.resolve_target(target)) <= set(level.targets)
    assert plan_from_json(plan_to_json(plan)) == plan


@given(
    st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), min_size=1, max_size=10),
    st.integers(min_value=0, max_value=2**41),
)
def test_policy_due_times_never_go_back(level_delays: list[float], created: int) -> None:
    """Due times of successive policy levels are non-decreasing and start after the trigger."""
    config = PolicyConfig.from_mapping(
        {
            "default_policy": "p",
            "policies": {
                "p": {"high": [{"delay": d, "targets": ["team-1"]} for d in level_delays]}
            },
        }
    )
    plan = config.plan_for("high", "", None)
    dues = [due_ms(created, plan, i) for i in range(len(plan))]
    assert all(d is not None and d >= created for d in dues)
    assert dues == sorted(dues)  # type: ignore[type-var]
    assert due_ms(created, plan, len(plan)) is None
