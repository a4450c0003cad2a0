"""The pure GatewayPolicy model: spec validation, the CRD and the gateway agree on the
ranges, one policy per target, conditions, presence."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from roomgate_gateway.limits import POLICY_FIELDS
from roomgate_operator.errors import InvalidPolicy
from roomgate_operator.policy import (
    LIMIT_RANGES,
    SCALING_RANGES,
    GatewayReport,
    PolicyRef,
    ScalingSpec,
    applied_generation,
    owner,
    parse_presence,
    parse_spec,
    set_condition,
)
from roomgate_tools.controlplane import REPO_ROOT

CRD = REPO_ROOT / "charts" / "roomgate" / "crds" / "gatewaypolicies.roomgate.io.yaml"
VALUES = REPO_ROOT / "charts" / "roomgate" / "values.yaml"


def crd_spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    version = crd["spec"]["versions"][0]
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]  # type: ignore[no-any-return]


def test_the_charts_default_policy_is_valid() -> None:
    """The GatewayPolicy the chart creates parses, with every field kept."""
    default = yaml.safe_load(VALUES.read_text())["operator"]["defaultPolicy"]
    spec = {"targetRef": {"name": "rg-roomgate-gateway"}, **default}
    spec.pop("create", None)
    policy = parse_spec(spec)
    assert policy.target == "rg-roomgate-gateway"
    assert policy.limits == default["limits"]
    assert policy.scaling is not None
    assert policy.scaling.min_replicas == default["scaling"]["minReplicas"]


def test_operator_ranges_match_the_crd_and_the_gateway() -> None:
    """Every limit and scaling field has the same range in the CRD and in the operator, and
    the gateway accepts every limit the CRD allows."""
    props = crd_spec_schema()
    limits = props["limits"]["properties"]
    assert set(limits) == set(LIMIT_RANGES) == set(POLICY_FIELDS)
    for name, (low, high) in LIMIT_RANGES.items():
        assert (limits[name]["minimum"], limits[name]["maximum"]) == (low, high), name
        _attr, _kind, gw_low, gw_high = POLICY_FIELDS[name]
        assert gw_low <= low and high <= gw_high, name
    scaling = props["scaling"]["properties"]
    assert set(scaling) == set(SCALING_RANGES)
    for name, (_attr, low, high) in SCALING_RANGES.items():
        assert (scaling[name]["minimum"], scaling[name]["maximum"]) == (low, high), name


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({}, "InvalidTarget"),
        ({"targetRef": {"name": "gw", "kind": "StatefulSet"}}, "InvalidTarget"),
        ({"targetRef": {"name": "gw"}, "limits": {"maxConnectionsPerIp": 0}}, "OutOfRange"),
        ({"targetRef": {"name": "gw"}, "limits": {"maxConnectionsPerIp": "9"}}, "InvalidValue"),
        ({"targetRef": {"name": "gw"}, "limits": {"maxConnectionsPerIp": True}}, "InvalidValue"),
        ({"targetRef": {"name": "gw"}, "limits": {"maxMessageBytes": 64}}, "OutOfRange"),
        ({"targetRef": {"name": "gw"}, "limits": {"colour": 1}}, "UnknownField"),
        (
            {
                "targetRef": {"name": "gw"},
                "limits": {"heartbeatIntervalSeconds": 30, "heartbeatTimeoutSeconds": 30},
            },
            "InvalidHeartbeat",
        ),
        (
            {"targetRef": {"name": "gw"}, "scaling": {"minReplicas": 5, "maxReplicas": 2}},
            "InvalidReplicaBounds",
        ),
        ({"targetRef": {"name": "gw"}, "scaling": {"targetConnectionsPerPod": 0}}, "OutOfRange"),
        ({"targetRef": {"name": "gw"}, "scaling": []}, "InvalidValue"),
    ],
)
def test_invalid_specs_are_rejected_with_a_reason(spec: dict[str, Any], reason: str) -> None:
    """Each semantic error names itself (the Degraded condition's reason)."""
    with pytest.raises(InvalidPolicy) as info:
        parse_spec(spec)
    assert info.value.reason == reason


@settings(deadline=None)  # no per-example deadline: the machine is shared
@given(
    st.fixed_dictionaries(
        {},
        optional={name: st.integers(-5, high + 5) for name, (_low, high) in LIMIT_RANGES.items()},
    ),
    st.integers(-2, 1002),
    st.integers(-2, 1002),
)
def test_parse_spec_accepts_exactly_the_valid_values(
    limits: dict[str, int], low: int, high: int
) -> None:
    """In range and coherent: parsed unchanged; otherwise InvalidPolicy, never another error."""
    spec = {
        "targetRef": {"name": "gw"},
        "limits": limits,
        "scaling": {"minReplicas": low, "maxReplicas": high},
    }
    in_range = all(LIMIT_RANGES[k][0] <= v <= LIMIT_RANGES[k][1] for k, v in limits.items())
    hb = limits.get("heartbeatIntervalSeconds"), limits.get("heartbeatTimeoutSeconds")
    coherent = None in hb or hb[1] > hb[0]  # type: ignore[operator]
    bounds = 1 <= low <= 1000 and 1 <= high <= 1000 and low <= high
    if in_range and coherent and bounds:
        policy = parse_spec(spec)
        assert policy.limits == limits
        assert policy.scaling == ScalingSpec(min_replicas=low, max_replicas=high)
    else:
        with pytest.raises(InvalidPolicy):
            parse_spec(spec)


def test_the_oldest_policy_governs_the_gateways() -> None:
    """One live policy per Redis: the oldest GatewayPolicy wins, then the first by name,
    whatever Deployment each names."""
    a = PolicyRef("2026-11-25T10:00:00Z", "b-policy", "gw")
    b = PolicyRef("2026-11-25T09:00:00Z", "z-policy", "gw")
    c = PolicyRef("2026-11-25T09:00:00Z", "a-other", "other")
    assert owner([a, b, c]) == c
    assert owner([a, b]) == b
    assert owner([]) is None


@settings(deadline=None)  # no per-example deadline: the machine is shared
@given(
    st.lists(
        st.builds(
            PolicyRef,
            st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]),
            st.text("abc", min_size=1, max_size=3),
            st.sampled_from(["gw", "gw2"]),
        ),
        min_size=1,
    ),
    st.randoms(),
)
def test_owner_does_not_depend_on_listing_order(policies: list[PolicyRef], rnd: Any) -> None:
    """The API server lists in any order; the winner is the same, and one of them."""
    shuffled = list(policies)
    rnd.shuffle(shuffled)
    assert owner(shuffled) == owner(policies)
    assert owner(policies) in policies


def test_set_condition_moves_the_transition_time_only_on_a_status_change() -> None:
    """Same status: reason and message update, lastTransitionTime stays."""
    conds = set_condition([], "Applied", False, "Pending", "1 of 2", now="t1", generation=1)
    assert conds == [
        {
            "type": "Applied",
            "status": "False",
            "reason": "Pending",
            "message": "1 of 2",
            "observedGeneration": 1,
            "lastTransitionTime": "t1",
        }
    ]
    conds = set_condition(conds, "Applied", False, "Pending", "2 of 3", now="t2", generation=2)
    assert conds[0]["lastTransitionTime"] == "t1" and conds[0]["message"] == "2 of 3"
    conds = set_condition(conds, "Ready", None, "NoGateways", "", now="t2", generation=2)
    conds = set_condition(conds, "Applied", True, "AllGatewaysApplied", "", now="t3", generation=2)
    assert [c["type"] for c in conds] == ["Applied", "Ready"]
    assert conds[0]["lastTransitionTime"] == "t3" and conds[1]["status"] == "Unknown"


def test_presence_and_applied_generation() -> None:
    """A presence hash as values; the applied generation is the minimum over gateways."""
    report = parse_presence(
        {b"connections": b"7", b"applied_generation": b"3", b"draining": b"1", b"ts": b"1.5"}
    )
    assert report == GatewayReport(connections=7, applied_generation=3, draining=True)
    assert parse_presence({b"rooms": b"2"}) is None
    assert parse_presence({b"connections": b"x"}) is None
    assert applied_generation([]) is None
    assert applied_generation([report, GatewayReport(1, 5, False)]) == 3
