"""Reading the policy file named by ``ROOMGATE_POLICY_FILE`` (YAML or JSON) at start."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from roomgate_common.errors import ConfigurationError

from roomgate_roomauthz.errors import PolicyError
from roomgate_roomauthz.policy import DEFAULT_POLICY, Policy


def load_policy(path: str) -> Policy:
    """The policy in ``path`` (the default policy when ``path`` is empty).

    ``.json`` files are read as JSON, anything else as YAML (safe loader). Raises
    ``ConfigurationError`` naming the file and the offending entry.
    """
    if not path:
        return DEFAULT_POLICY
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"ROOMGATE_POLICY_FILE: cannot read {path}: {exc}") from None
    try:
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"ROOMGATE_POLICY_FILE: {path} does not parse: {exc}") from None
    try:
        return Policy.from_mapping(data)
    except PolicyError as exc:
        raise ConfigurationError(f"ROOMGATE_POLICY_FILE: {path}: {exc}") from None
