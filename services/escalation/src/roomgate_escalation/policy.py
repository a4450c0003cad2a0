"""The escalation policy: pure logic, no I/O (no redis, no grpc).

* ``AlertState`` and its guarded transitions.
* Targets: ``team-{id}``, ``role-{name}``, ``user-{id}`` (the room grammar of roomauthz) or a
  named alias from the policy file (``ops-team`` -> ``team-7``...). Anything else is refused.
* Policies: named, each ``severity -> ordered levels`` of ``(delay, targets)``; a level's
  delay counts from the previous level (the first from the trigger).
* Per-alert ``actions`` (``{"type": "escalate", "delay": 300, "target": "ops-team"}``): each
  delay counts from the trigger; actions with the same delay form one level.
* ``parse_alert`` validates an alert object (the protocol's ``alert_triggered`` data) and
  computes its ``Plan``: levels with their offset from the trigger, in firing order.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from roomgate_common.rooms import RoomKind, parse_room

from roomgate_escalation.errors import InvalidAlert

SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low", "info")

MAX_LEVELS = 10
"""Most escalation levels one alert can have."""

MAX_TARGETS_PER_LEVEL = 10
MAX_ACTIONS = 20
DEFAULT_MAX_DELAY = 7 * 24 * 3600.0
"""Default longest delay (seconds) of one level; longer is refused as absurd."""

DEFAULT_MAX_ALERT_BYTES = 16 * 1024
"""Default largest alert object, as compact JSON."""

MAX_TITLE = 512
MAX_DESCRIPTION = 8192
MAX_ID_CHARS = 128
MAX_BY_CHARS = 128

ALERT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
DEDUP_PATTERN = re.compile(r"[\x21-\x7e]{1,256}")
PRINCIPAL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@\-]{0,127}")
# Escalation targets are rooms of these kinds (the protocol's room grammar).
TARGET_KINDS = frozenset({RoomKind.TEAM, RoomKind.USER, RoomKind.ROLE})


def is_target(name: str) -> bool:
    """``team-{id}``, ``user-{id}`` or ``role-{name}``, exactly as the room grammar says."""
    room = parse_room(name)
    return room is not None and room.kind in TARGET_KINDS


ALIAS_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
POLICY_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


class AlertState(enum.Enum):
    TRIGGERED = "triggered"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"

    @property
    def escalating(self) -> bool:
        """True while timers may still fire (neither acknowledged nor resolved)."""
        return self in (AlertState.TRIGGERED, AlertState.ESCALATED)

    @property
    def active(self) -> bool:
        return self is not AlertState.RESOLVED


ACTIVE_STATES: tuple[AlertState, ...] = (
    AlertState.TRIGGERED,
    AlertState.ESCALATED,
    AlertState.ACKNOWLEDGED,
)

_TRANSITIONS: dict[AlertState, frozenset[AlertState]] = {
    AlertState.TRIGGERED: frozenset(
        {AlertState.ESCALATED, AlertState.ACKNOWLEDGED, AlertState.RESOLVED}
    ),
    AlertState.ESCALATED: frozenset(
        {AlertState.ESCALATED, AlertState.ACKNOWLEDGED, AlertState.RESOLVED}
    ),
    AlertState.ACKNOWLEDGED: frozenset({AlertState.RESOLVED}),
    AlertState.RESOLVED: frozenset(),
}


def can_transition(current: AlertState, to: AlertState) -> bool:
    """The guarded transitions (the Lua scripts of ``store`` apply the same table)."""
    return to in _TRANSITIONS[current]


@dataclass(frozen=True, slots=True)
class Level:
    """One escalation level of an alert: fire ``at`` seconds after the trigger."""

    at: float
    targets: tuple[str, ...]


Plan = tuple[Level, ...]


@dataclass(frozen=True, slots=True)
class PolicyLevel:
    """A level of a named policy: ``delay`` seconds after the previous level."""

    delay: float
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    name: str
    levels: Mapping[str, tuple[PolicyLevel, ...]]

    def plan(self, severity: str) -> Plan:
        """Cumulative offsets: the levels in order, each ``delay`` after the previous one."""
        at = 0.0
        out: list[Level] = []
        for level in self.levels.get(severity, ()):
            at += level.delay
            out.append(Level(at=at, targets=level.targets))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """The policy file: named policies, the default policy, target aliases, limits."""

    policies: Mapping[str, EscalationPolicy] = field(default_factory=dict)
    default_policy: str = ""
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    max_delay: float = DEFAULT_MAX_DELAY
    max_alert_bytes: int = DEFAULT_MAX_ALERT_BYTES

    @classmethod
    def from_mapping(
        cls,
        raw: Mapping[str, Any],
        *,
        max_delay: float = DEFAULT_MAX_DELAY,
        max_alert_bytes: int = DEFAULT_MAX_ALERT_BYTES,
    ) -> PolicyConfig:
        """Build from the parsed policy file (TOML or JSON); ``InvalidAlert`` names the fault.

        ::

            default_policy = "standard"
            [targets]                       # aliases usable as targets
            ops-team = ["team-7"]
            [policies.standard]
            critical = [{delay = 300, targets = ["ops-team"]},
                        {delay = 600, targets = ["role-oncall_lead", "user-42"]}]
            high = [{delay = 900, targets = ["team-7"]}]
        """
        unknown = set(raw) - {"default_policy", "targets", "policies"}
        if unknown:
            raise InvalidAlert("invalid_policy_file", f"unknown keys {sorted(unknown)}")
        aliases_raw = raw.get("targets", {})
        if not isinstance(aliases_raw, Mapping):
            raise InvalidAlert("invalid_policy_file", "targets must be a table")
        aliases: dict[str, tuple[str, ...]] = {}
        for name, rooms in aliases_raw.items():
            if not isinstance(name, str) or not ALIAS_PATTERN.fullmatch(name):
                raise InvalidAlert("invalid_policy_file", f"bad alias name {name!r}")
            if is_target(name):
                raise InvalidAlert("invalid_policy_file", f"alias {name!r} looks like a room")
            if isinstance(rooms, str):
                rooms = [rooms]
            if not isinstance(rooms, list) or not rooms:
                raise InvalidAlert("invalid_policy_file", f"alias {name!r} needs rooms")
            for room in rooms:
                if not isinstance(room, str) or not is_target(room):
                    raise InvalidAlert(
                        "invalid_policy_file", f"alias {name!r}: {room!r} is not a target room"
                    )
            aliases[name] = tuple(dict.fromkeys(rooms))
        base = cls(aliases=aliases, max_delay=max_delay, max_alert_bytes=max_alert_bytes)
        policies_raw = raw.get("policies", {})
        if not isinstance(policies_raw, Mapping):
            raise InvalidAlert("invalid_policy_file", "policies must be a table")
        policies: dict[str, EscalationPolicy] = {}
        for pname, by_severity in policies_raw.items():
            if not isinstance(pname, str) or not POLICY_NAME_PATTERN.fullmatch(pname):
                raise InvalidAlert("invalid_policy_file", f"bad policy name {pname!r}")
            if not isinstance(by_severity, Mapping):
                raise InvalidAlert("invalid_policy_file", f"policy {pname!r} must be a table")
            levels: dict[str, tuple[PolicyLevel, ...]] = {}
            for severity, items in by_severity.items():
                if severity not in SEVERITIES:
                    raise InvalidAlert(
                        "invalid_policy_file", f"policy {pname!r}: unknown severity {severity!r}"
                    )
                if not isinstance(items, list) or len(items) > MAX_LEVELS:
                    raise InvalidAlert(
                        "invalid_policy_file",
                        f"policy {pname!r}.{severity}: a list of at most {MAX_LEVELS} levels",
                    )
                parsed: list[PolicyLevel] = []
                for item in items:
                    if not isinstance(item, Mapping) or set(item) != {"delay", "targets"}:
                        raise InvalidAlert(
                            "invalid_policy_file",
                            f"policy {pname!r}.{severity}: each level is {{delay, targets}}",
                        )
                    targets = item["targets"]
                    if not isinstance(targets, list):
                        raise InvalidAlert(
                            "invalid_policy_file", f"policy {pname!r}: targets must be a list"
                        )
                    parsed.append(
                        PolicyLevel(
                            delay=base.check_delay(item["delay"]),
                            targets=base.resolve_targets(targets),
                        )
                    )
                levels[severity] = tuple(parsed)
            policies[pname] = EscalationPolicy(name=pname, levels=levels)
        default = raw.get("default_policy", "")
        if not isinstance(default, str) or (default and default not in policies):
            raise InvalidAlert("invalid_policy_file", f"default_policy {default!r} is not defined")
        return cls(
            policies=policies,
            default_policy=default,
            aliases=aliases,
            max_delay=max_delay,
            max_alert_bytes=max_alert_bytes,
        )

    # --- validation ---------------------------------------------------------------------

    def check_delay(self, value: object) -> float:
        """Seconds, finite, 0 <= delay <= max_delay (bools and strings are refused)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidAlert("invalid_delay", f"delay must be a number of seconds: {value!r}")
        delay = float(value)
        if not math.isfinite(delay) or delay < 0:
            raise InvalidAlert("invalid_delay", f"delay must be finite and >= 0: {value!r}")
        if delay > self.max_delay:
            raise InvalidAlert("invalid_delay", f"delay {delay:g}s exceeds {self.max_delay:g}s")
        return delay

    def resolve_target(self, target: object) -> tuple[str, ...]:
        """A target -> the rooms it names (one room, or an alias's rooms)."""
        if not isinstance(target, str):
            raise InvalidAlert("invalid_target", f"target must be a string: {target!r}")
        if is_target(target):
            return (target,)
        if target in self.aliases:
            return self.aliases[target]
        raise InvalidAlert(
            "invalid_target",
            f"{target[:80]!r} is not team-{{id}}, role-{{name}}, user-{{id}} or a known alias",
        )

    def resolve_targets(self, targets: Sequence[object]) -> tuple[str, ...]:
        rooms: list[str] = []
        for target in targets:
            rooms.extend(self.resolve_target(target))
        rooms = list(dict.fromkeys(rooms))
        if not rooms:
            raise InvalidAlert("invalid_target", "a level needs at least one target")
        if len(rooms) > MAX_TARGETS_PER_LEVEL:
            raise InvalidAlert(
                "invalid_target", f"at most {MAX_TARGETS_PER_LEVEL} targets per level"
            )
        return tuple(rooms)

    def plan_from_actions(self, actions: object) -> Plan:
        """Per-alert ``escalate`` actions -> levels (delay from the trigger; equal delays merge).
        Actions of other types are left for other consumers and ignored here."""
        if not isinstance(actions, list):
            raise InvalidAlert("invalid_action", "actions must be a list")
        if len(actions) > MAX_ACTIONS:
            raise InvalidAlert("invalid_action", f"at most {MAX_ACTIONS} actions")
        by_delay: dict[float, list[str]] = {}
        for action in actions:
            if not isinstance(action, Mapping) or not isinstance(action.get("type"), str):
                raise InvalidAlert("invalid_action", "each action is an object with a type")
            if action["type"] != "escalate":
                continue
            if "delay" not in action or "target" not in action:
                raise InvalidAlert("invalid_action", "escalate needs delay and target")
            delay = self.check_delay(action["delay"])
            by_delay.setdefault(delay, []).extend(self.resolve_target(action["target"]))
        if len(by_delay) > MAX_LEVELS:
            raise InvalidAlert("invalid_action", f"at most {MAX_LEVELS} distinct delays")
        return tuple(
            Level(at=delay, targets=self.resolve_targets(rooms))
            for delay, rooms in sorted(by_delay.items())
        )

    def plan_for(self, severity: str, policy: str, actions: object) -> Plan:
        """Per-alert actions win; otherwise the named (or default) policy for the severity."""
        if actions:
            plan = self.plan_from_actions(actions)
            if plan:
                return plan
        name = policy or self.default_policy
        if not name:
            return ()
        if name not in self.policies:
            raise InvalidAlert("unknown_policy", f"no policy named {name[:64]!r}")
        return self.policies[name].plan(severity)


@dataclass(frozen=True, slots=True)
class AlertInput:
    """A validated trigger."""

    alert_id: str
    severity: str
    title: str
    description: str
    dedup_key: str
    policy: str
    plan: Plan
    data: dict[str, Any]

    def data_json(self) -> str:
        return json.dumps(self.data, separators=(",", ":"), ensure_ascii=False)


def _text(data: Mapping[str, Any], key: str, limit: int, *, required: bool) -> str:
    value = data.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidAlert(f"invalid_{key}", f"{key} must be a string")
    if required and not value.strip():
        raise InvalidAlert(f"invalid_{key}", f"{key} is required")
    if len(value) > limit:
        raise InvalidAlert("too_large", f"{key} longer than {limit} characters")
    return value


def canonical_alert_id(value: object) -> str:
    """``789`` or ``"789"`` -> ``"789"``; refuses anything outside the id grammar."""
    if isinstance(value, bool):
        raise InvalidAlert("invalid_alert_id", "alert_id must be a string or an integer")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not ALERT_ID_PATTERN.fullmatch(value):
        shown = value[:80] if isinstance(value, str) else value
        raise InvalidAlert(
            "invalid_alert_id", f"{shown!r} is not 1-128 characters of [A-Za-z0-9_.-]"
        )
    return value


def check_principal(by: str) -> str:
    """Who acknowledges or resolves: a principal id (user id, service name...)."""
    if not isinstance(by, str) or not PRINCIPAL_PATTERN.fullmatch(by):
        raise InvalidAlert("invalid_by", "by must be a principal id (1-128 characters)")
    return by


def parse_alert(data: object, config: PolicyConfig, *, default_id: str) -> AlertInput:
    """Validate an alert object; ``default_id`` is used when it carries no ``alert_id``."""
    if not isinstance(data, dict):
        raise InvalidAlert("invalid_alert", "the alert must be a JSON object")
    size = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
    if size > config.max_alert_bytes:
        raise InvalidAlert("too_large", f"alert is {size} bytes, limit {config.max_alert_bytes}")
    raw_id = data.get("alert_id")
    alert_id = canonical_alert_id(default_id if raw_id in (None, "") else raw_id)
    severity = data.get("severity")
    if severity not in SEVERITIES:
        raise InvalidAlert(
            "invalid_severity", f"severity must be one of {', '.join(SEVERITIES)}: {severity!r}"
        )
    assert isinstance(severity, str)
    title = _text(data, "title", MAX_TITLE, required=True)
    description = _text(data, "description", MAX_DESCRIPTION, required=False)
    dedup = data.get("dedup_key") or ""
    if dedup and (not isinstance(dedup, str) or not DEDUP_PATTERN.fullmatch(dedup)):
        raise InvalidAlert("invalid_dedup_key", "dedup_key must be 1-256 printable ASCII")
    policy = data.get("policy") or ""
    if not isinstance(policy, str):
        raise InvalidAlert("unknown_policy", "policy must be a string")
    plan = config.plan_for(severity, policy, data.get("actions"))
    normalised = dict(data)
    normalised.setdefault("alert_id", alert_id)
    if raw_id in (None, ""):
        normalised["alert_id"] = alert_id
    return AlertInput(
        alert_id=alert_id,
        severity=severity,
        title=title,
        description=description,
        dedup_key=dedup,
        policy=policy or config.default_policy,
        plan=plan,
        data=normalised,
    )


def due_ms(created_ms: int, plan: Plan, level: int) -> int | None:
    """When level ``level`` (0-based) is due, or None past the last level."""
    if level >= len(plan):
        return None
    return created_ms + round(plan[level].at * 1000)


def plan_to_json(plan: Plan) -> str:
    return json.dumps([[lv.at, list(lv.targets)] for lv in plan], separators=(",", ":"))


def plan_from_json(raw: str) -> Plan:
    return tuple(Level(at=float(at), targets=tuple(targets)) for at, targets in json.loads(raw))


def escalation_envelope_id(alert_id: str, level: int) -> str:
    """The deterministic id of the ``alert_escalated`` envelope of level ``level`` (1-based),
    the same in every room it goes to: clients and recovery deduplicate on it."""
    return f"{alert_id}:esc:{level}"
