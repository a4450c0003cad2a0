"""The alerting rules (charts/roomgate/files/alerts.yaml) pass ``promtool check rules`` and
their unit tests (alerts_test.yaml: each alert fires after its ``for:`` and stays silent in
the healthy case next to it). promtool comes from ``make obs-tools``; missing, this fails."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from roomgate_tools.observability import ALERT_RULES, find_obs_binary
from roomgate_tools.procs import ProcessError

HERE = Path(__file__).parent
ALERTS = {
    "RoomgateRedisUnreachable",
    "RoomgateGatewayDropRate",
    "RoomgateSlowConsumerCloses",
    "RoomgateAuthBreakerOpen",
    "RoomgateRoomauthzUnavailable",
    "RoomgateGatewayPolicyNotApplied",
    "RoomgateEscalationTimerLag",
    "RoomgateGatewaySaturated",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    try:
        return find_obs_binary("promtool")
    except ProcessError as exc:
        pytest.fail(str(exc))


def promtool_run(promtool: str, *args: str) -> str:
    proc = subprocess.run(
        [promtool, *args], cwd=HERE, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_rules_are_valid(promtool: str) -> None:
    """promtool check rules: 8 rules, no lint findings."""
    out = promtool_run(promtool, "check", "rules", "--lint-fatal", str(ALERT_RULES))
    assert "SUCCESS: 8 rules found" in out, out


def test_rule_unit_tests_pass(promtool: str) -> None:
    """promtool test rules alerts_test.yaml: SUCCESS."""
    out = promtool_run(promtool, "test", "rules", "alerts_test.yaml")
    assert "SUCCESS" in out, out


def test_every_alert_has_a_unit_test_and_a_runbook() -> None:
    """Each alert is tested firing in alerts_test.yaml and has a runbook section in the docs."""
    rules = yaml.safe_load(ALERT_RULES.read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert names == ALERTS
    tests = yaml.safe_load((HERE / "alerts_test.yaml").read_text())
    fired = {
        case["alertname"]
        for t in tests["tests"]
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == ALERTS
    docs = (Path(__file__).resolve().parents[2] / "docs" / "observability.md").read_text()
    for rule in (r for g in rules["groups"] for r in g["rules"]):
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert f"### {rule['alert']}" in docs and anchor == rule["alert"].lower()
