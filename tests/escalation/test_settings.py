"""Settings: defaults, the environment, and the policy file read once at start."""

from __future__ import annotations

from pathlib import Path

import pytest
from roomgate_common.errors import ConfigurationError
from roomgate_escalation.policy import Level
from roomgate_escalation.settings import EscalationSettings

TOML = """
default_policy = "standard"
[targets]
ops-team = ["team-7"]
[policies.standard]
critical = [{ delay = 300, targets = ["ops-team"] }, { delay = 600, targets = ["user-42"] }]
"""


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defaults are the documented ones; ROOMGATE_ESCALATION_* variables override them."""
    settings = EscalationSettings.from_env()
    assert settings.escalation_listen == "127.0.0.1:50053"
    assert settings.escalation_lease_ms == 30_000
    assert settings.escalation_consumer_group == "escalation"
    monkeypatch.setenv("ROOMGATE_ESCALATION_LEASE_MS", "5000")
    monkeypatch.setenv("ROOMGATE_ESCALATION_CONSUMER_NAME", "pod-1")
    settings = EscalationSettings.from_env()
    assert (settings.escalation_lease_ms, settings.escalation_consumer_name) == (5000, "pod-1")
    monkeypatch.setenv("ROOMGATE_ESCALATION_LEASE_MS", "10")
    with pytest.raises(ConfigurationError, match="ROOMGATE_ESCALATION_LEASE_MS"):
        EscalationSettings.from_env()


def test_policy_file_toml_and_json(tmp_path: Path) -> None:
    """A TOML policy file is read and validated; JSON works too."""
    path = tmp_path / "policy.toml"
    path.write_text(TOML)
    config = EscalationSettings.from_env(escalation_policy_file=str(path)).policy_config()
    assert config.policies["standard"].plan("critical") == (
        Level(at=300.0, targets=("team-7",)),
        Level(at=900.0, targets=("user-42",)),
    )
    json_path = tmp_path / "policy.json"
    json_path.write_text('{"targets": {"ops": ["team-1"]}}')
    config = EscalationSettings.from_env(escalation_policy_file=str(json_path)).policy_config()
    assert config.aliases == {"ops": ("team-1",)}


@pytest.mark.parametrize(
    "content", ["not toml [", 'default_policy = "missing"', '[targets]\nx = ["group-1"]']
)
def test_bad_policy_file_fails_fast(tmp_path: Path, content: str) -> None:
    """A bad or missing policy file is a ConfigurationError naming the variable."""
    path = tmp_path / "policy.toml"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match="ROOMGATE_ESCALATION_POLICY_FILE"):
        EscalationSettings.from_env(escalation_policy_file=str(path)).policy_config()
    with pytest.raises(ConfigurationError, match="ROOMGATE_ESCALATION_POLICY_FILE"):
        EscalationSettings.from_env(escalation_policy_file=str(tmp_path / "no")).policy_config()
