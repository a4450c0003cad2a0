"""The authorisation decision (pure): every default rule for subscribe and publish, the
lookups it asks for, policy documents, and the invalidation event format."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from roomgate_common.aclevents import (
    AclChange,
    AclChangedEvent,
    Relation,
    may_affect,
    parse_acl_event,
)
from roomgate_common.errors import ConfigurationError
from roomgate_common.identity import Principal, PrincipalKind
from roomgate_roomauthz.acl import AclCache
from roomgate_roomauthz.errors import PolicyError
from roomgate_roomauthz.policy import (
    DEFAULT_POLICY,
    PUBLISH_PERMISSION,
    AclFacts,
    Action,
    Policy,
    Reason,
    principal_from_parts,
)
from roomgate_roomauthz.policy_file import load_policy

ROOT = Path(__file__).resolve().parents[2]
S, P = Action.SUBSCRIBE, Action.PUBLISH
AG, UG, UT = Relation.AGENT_GROUP, Relation.USER_GROUP, Relation.USER_TEAM


def user(id: str = "42", **kw: object) -> Principal:
    return principal_from_parts(PrincipalKind.USER, id, **kw)  # type: ignore[arg-type]


def agent(id: str = "7", **kw: object) -> Principal:
    return principal_from_parts(PrincipalKind.AGENT, id, **kw)  # type: ignore[arg-type]


def service(id: str = "alert-manager", **kw: object) -> Principal:
    return principal_from_parts(PrincipalKind.SERVICE, id, **kw)  # type: ignore[arg-type]


AGENT7_IN_G3: AclFacts = {(AG, "7"): frozenset({"3"})}

SUBSCRIBE = [
    # global rooms: view_system
    ("system", user(permissions={"view_system"}), {}, "allowed"),
    ("alerts", user(permissions={"view_system"}), {}, "allowed"),
    ("maintenance", user(permissions={"view_system"}), {}, "allowed"),
    ("system", user(permissions={"view_agents"}), {}, "missing_permission"),
    ("alerts", user(), {}, "missing_permission"),
    ("maintenance", agent(), {}, "missing_permission"),
    # agents: view_agents
    ("agents", user(permissions={"view_agents"}), {}, "allowed"),
    ("agents", user(permissions={"view_system"}), {}, "missing_permission"),
    # agent-{id}: shared group (token or ACL), view_all_agents, or the agent itself
    ("agent-7", user(group_ids={"3"}), AGENT7_IN_G3, "allowed"),
    ("agent-7", user(), {**AGENT7_IN_G3, (UG, "42"): frozenset({"3"})}, "allowed"),
    ("agent-7", user(group_ids={"4"}), AGENT7_IN_G3, "not_in_agent_group"),
    ("agent-7", user(), {(UG, "42"): frozenset({"3"})}, "not_in_agent_group"),
    ("agent-7", user(permissions={"view_all_agents"}), {}, "allowed"),
    ("agent-7", user(permissions={"view_agents"}), {}, "not_in_agent_group"),
    ("agent-7", agent("7"), {}, "allowed"),
    ("agent-7", agent("8"), {**AGENT7_IN_G3, (AG, "8"): frozenset({"3"})}, "not_in_agent_group"),
    ("agent-7", agent("8", group_ids={"3"}), AGENT7_IN_G3, "allowed"),
    ("agent-7", user("7"), {}, "not_in_agent_group"),
    # tasks / task-{id}: view_tasks
    ("tasks", user(permissions={"view_tasks"}), {}, "allowed"),
    ("task-456", user(permissions={"view_tasks"}), {}, "allowed"),
    ("tasks", user(), {}, "missing_permission"),
    ("task-456", agent(), {}, "missing_permission"),
    # group-{id}: token groups or ACL (user_group for users, agent_group for agents)
    ("group-3", user(group_ids={"3"}), {}, "allowed"),
    ("group-3", user(), {(UG, "42"): frozenset({"3"})}, "allowed"),
    ("group-3", agent(), AGENT7_IN_G3, "allowed"),
    ("group-3", user(), {(UG, "42"): frozenset({"4"})}, "not_member"),
    ("group-3", user(team_ids={"3"}), {}, "not_member"),
    ("group-3", service(group_ids={"3"}), {}, "allowed"),
    # team-{id}: token teams or ACL user_team
    ("team-5", user(team_ids={"5"}), {}, "allowed"),
    ("team-5", user(), {(UT, "42"): frozenset({"5"})}, "allowed"),
    ("team-5", user(group_ids={"5"}), {(UG, "42"): frozenset({"5"})}, "not_member"),
    ("team-5", agent(), {}, "not_member"),
    # role-{name}: that role
    ("role-admin", user(roles={"admin"}), {}, "allowed"),
    ("role-admin", user(roles={"operator"}, permissions={"admin"}), {}, "missing_role"),
    # user-{id} / session-{id}: only the owner
    ("user-42", user("42"), {}, "allowed"),
    ("user-42", user("43"), {}, "not_owner"),
    ("user-42", agent("42"), {}, "not_owner"),
    ("user-42", user("043"), {}, "not_owner"),
    ("user-42", service("42"), {}, "not_owner"),
    ("session-9", user("42", session_id="9"), {}, "allowed"),
    ("session-9", agent("7", session_id="9"), {}, "allowed"),
    ("session-9", user("9", session_id="10"), {}, "not_owner"),
    ("session-9", user("42"), {}, "not_owner"),
    # services subscribe under the same rules
    ("system", service(permissions={"view_system"}), {}, "allowed"),
    ("system", service(permissions={PUBLISH_PERMISSION}), {}, "missing_permission"),
    # not a room
    ("Agents", user(permissions={"view_agents"}), {}, "unknown_room"),
    ("agent-07", user(permissions={"view_all_agents"}), {}, "unknown_room"),
    ("lobby", user(), {}, "unknown_room"),
]


@pytest.mark.parametrize(("room", "principal", "facts", "reason"), SUBSCRIBE)
def test_subscribe_rules(room: str, principal: Principal, facts: AclFacts, reason: str) -> None:
    """Each default subscribe rule allows the right principals and names why it denies."""
    decision = DEFAULT_POLICY.decide(principal, room, S, "", facts)
    assert decision.reason == reason
    assert decision.allowed == (reason == "allowed")


VIEWER = {"view_system"}
PUBLISH = [
    # services with the publish permission: any known room, any type
    ("alerts", "alert_triggered", service(permissions={PUBLISH_PERMISSION}), "allowed"),
    ("user-42", "task_created", service(permissions={PUBLISH_PERMISSION}), "allowed"),
    ("role-admin", "anything_new", service(permissions={PUBLISH_PERMISSION}), "allowed"),
    ("agent-7", "agent_status", service(permissions={"view_system"}), "missing_permission"),
    ("nowhere", "alert_triggered", service(permissions={PUBLISH_PERMISSION}), "unknown_room"),
    # agents: own status into agents and agent-{own id}
    ("agents", "agent_status", agent("7"), "allowed"),
    ("agents", "agent_updated", agent("7"), "allowed"),
    ("agent-7", "agent_status", agent("7"), "allowed"),
    ("agent-7", "agent_updated", agent("7"), "allowed"),
    ("agent-8", "agent_status", agent("7"), "not_owner"),
    ("agents", "agent_connected", agent("7"), "type_not_allowed"),
    ("agents", "task_progress", agent("7", permissions={"report_tasks"}), "type_not_allowed"),
    ("system", "agent_status", agent("7"), "publish_not_allowed"),
    ("group-3", "agent_status", agent("7", group_ids={"3"}), "publish_not_allowed"),
    # agents with report_tasks: task progress into tasks and task-{id}
    ("task-5", "task_progress", agent("7", permissions={"report_tasks"}), "allowed"),
    ("tasks", "task_completed", agent("7", permissions={"report_tasks"}), "allowed"),
    ("task-5", "task_started", agent("7", permissions={"report_tasks"}), "allowed"),
    ("task-5", "task_failed", agent("7", permissions={"report_tasks"}), "allowed"),
    ("task-5", "task_progress", agent("7"), "missing_permission"),
    ("task-5", "task_created", agent("7", permissions={"report_tasks"}), "type_not_allowed"),
    # users: alert_acknowledged / alert_resolved into alerts (and they must see alerts)
    ("alerts", "alert_acknowledged", user(permissions={"ack_alerts", *VIEWER}), "allowed"),
    ("alerts", "alert_resolved", user(permissions={"resolve_alerts", *VIEWER}), "allowed"),
    ("alerts", "alert_acknowledged", user(permissions=VIEWER), "missing_permission"),
    ("alerts", "alert_acknowledged", user(permissions={"ack_alerts"}), "missing_permission"),
    ("alerts", "alert_resolved", user(permissions={"ack_alerts", *VIEWER}), "missing_permission"),
    ("alerts", "alert_triggered", user(permissions={"ack_alerts", *VIEWER}), "type_not_allowed"),
    (
        "system",
        "alert_acknowledged",
        user(permissions={"ack_alerts", *VIEWER}),
        "publish_not_allowed",
    ),
    ("user-42", "ping", user("42"), "publish_not_allowed"),
    ("agent-7", "agent_status", user(permissions={"view_all_agents"}), "publish_not_allowed"),
    # type missing, room unknown
    ("agents", "", agent("7"), "missing_message_type"),
    ("agents", "", service(permissions={PUBLISH_PERMISSION}), "missing_message_type"),
    ("agent-+7", "agent_status", agent("7"), "unknown_room"),
]


@pytest.mark.parametrize(("room", "message_type", "principal", "reason"), PUBLISH)
def test_publish_rules(room: str, message_type: str, principal: Principal, reason: str) -> None:
    """Publishing is narrower than subscribing: only the listed types, rooms and principals."""
    decision = DEFAULT_POLICY.decide(principal, room, P, message_type)
    assert decision.reason == reason
    assert decision.allowed == (reason == "allowed")


def test_unknown_action_is_invalid_action() -> None:
    """An action that is neither subscribe nor publish is denied with invalid_action."""
    decision = DEFAULT_POLICY.decide(user(), "system", None)
    assert (decision.allowed, decision.reason) == (False, "invalid_action")


def test_lookups_ask_only_for_what_the_rule_reads() -> None:
    """Lookups name the ACL reads a decision needs and nothing for rooms without ACL rules."""
    lookups = DEFAULT_POLICY.lookups
    assert lookups(user("42"), "agent-7", S) == {(AG, "7"), (UG, "42")}
    assert lookups(agent("8"), "agent-7", S) == {(AG, "7")}
    assert lookups(user("42"), "group-3", S) == {(UG, "42")}
    assert lookups(agent("8"), "group-3", S) == {(AG, "8")}
    assert lookups(user("42"), "team-5", S) == {(UT, "42")}
    assert lookups(service(), "group-3", S) == set()
    assert lookups(user("42"), "system", S) == set()
    assert lookups(user("42"), "Agents", S) == set()
    assert lookups(user("42"), "agent-7", P, "agent_status") == set()
    assert lookups(user("abc"), "team-5", S) == set()


def test_reasons_match_the_proto_comment() -> None:
    """The Decision.reason comment in roomauthz.proto lists exactly the reasons the policy gives."""
    proto = (ROOT / "protos/roomgate/roomauthz/v1/roomauthz.proto").read_text()
    comment = proto.split("message Decision {", 1)[1].split("string reason", 1)[0]
    text = " ".join(line.strip().lstrip("/") for line in comment.splitlines())
    listed = text.split("Machine-readable:", 1)[1].split(".", 1)[0]
    assert re.findall(r"[a-z_]+", listed) == list(Reason.ALL)


def test_policy_document_overrides_one_room_kind() -> None:
    """A subscribe entry replaces that kind's checks and leaves the other kinds default."""
    policy = Policy.from_mapping(
        {"subscribe": {"alerts": [{"permission": "view_alerts"}], "maintenance": []}}
    )
    viewer = user(permissions={"view_system"})
    assert policy.decide(viewer, "alerts", S).reason == "missing_permission"
    assert policy.decide(user(permissions={"view_alerts"}), "alerts", S).allowed
    assert policy.decide(viewer, "system", S).allowed
    assert policy.decide(viewer, "maintenance", S).reason == "denied_by_policy"
    assert policy.publish == DEFAULT_POLICY.publish


def test_policy_document_replaces_publish_rules() -> None:
    """A publish list replaces every default rule (here: agents may publish only into their
    own room, users may post chat messages into their teams)."""
    policy = Policy.from_mapping(
        {
            "publish": [
                {"principals": ["agent"], "rooms": ["agent"], "own": True, "types": ["*"]},
                {
                    "principals": ["user"],
                    "rooms": ["team"],
                    "types": ["chat_message"],
                    "readable": True,
                },
            ]
        }
    )
    assert policy.decide(agent("7"), "agent-7", P, "anything").allowed
    assert policy.decide(agent("7"), "agents", P, "agent_status").reason == "publish_not_allowed"
    member = user(team_ids={"5"})
    assert policy.decide(member, "team-5", P, "chat_message").allowed
    assert policy.decide(user(), "team-5", P, "chat_message").reason == "not_member"
    admin = service(permissions={PUBLISH_PERMISSION})
    assert policy.decide(admin, "alerts", P, "alert_triggered").reason == "publish_not_allowed"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "expected a mapping"),
        ({"subscribe": {}, "extra": 1}, "unknown keys"),
        ({"subscribe": {"lobby": []}}, "unknown room kind"),
        ({"subscribe": {"system": "view_system"}}, "expected a list"),
        ({"subscribe": {"system": ["member"]}}, "does not apply"),
        ({"subscribe": {"system": ["permission"]}}, "permission: NAME"),
        ({"subscribe": {"system": [{"permission": ""}]}}, "non-empty"),
        ({"subscribe": {"system": ["superuser"]}}, "unknown check"),
        ({"publish": {"principals": ["user"]}}, "list of rules"),
        ({"publish": [{"principals": ["user"], "rooms": ["alerts"]}]}, "'types' is required"),
        ({"publish": [{"principals": ["root"], "rooms": ["*"], "types": ["*"]}]}, "principal kind"),
        ({"publish": [{"principals": ["user"], "rooms": ["*"], "types": []}]}, "non-empty list"),
        (
            {"publish": [{"principals": ["user"], "rooms": ["*"], "types": ["*"], "own": True}]},
            "have an owner",
        ),
        (
            {"publish": [{"principals": ["user"], "rooms": ["x"], "types": ["*"], "own": 1}]},
            "unknown room kind",
        ),
        ({"publish": [{"principals": ["user"], "rooms": ["*"], "types": ["*"], "ttl": 1}]}, "ttl"),
    ],
)
def test_invalid_policy_documents_are_refused(document: object, message: str) -> None:
    """A bad policy document fails with a message naming the bad entry."""
    with pytest.raises(PolicyError, match=re.escape(message)):
        Policy.from_mapping(document)


def test_policy_files_yaml_json_and_errors(tmp_path: Path) -> None:
    """Policy files load from YAML or JSON; unreadable or invalid files fail at start."""
    yaml_file = tmp_path / "policy.yaml"
    yaml_file.write_text("subscribe:\n  agents:\n    - permission: view_fleet\n")
    json_file = tmp_path / "policy.json"
    json_file.write_text('{"subscribe": {"tasks": [{"permission": "view_jobs"}]}}')
    assert load_policy(str(yaml_file)).decide(user(permissions={"view_fleet"}), "agents", S).allowed
    assert load_policy(str(json_file)).decide(user(permissions={"view_jobs"}), "tasks", S).allowed
    assert load_policy("") is DEFAULT_POLICY
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_policy(str(tmp_path / "missing.yaml"))
    (tmp_path / "bad.yaml").write_text("subscribe: [unclosed\n")
    with pytest.raises(ConfigurationError, match="does not parse"):
        load_policy(str(tmp_path / "bad.yaml"))
    (tmp_path / "wrong.json").write_text('{"subscribe": {"lobby": []}}')
    with pytest.raises(ConfigurationError, match=r"ROOMGATE_POLICY_FILE: .*unknown room kind"):
        load_policy(str(tmp_path / "wrong.json"))


def test_event_json_is_exact_and_parses_back() -> None:
    """The invalidation event has the documented JSON and parses back to the same value."""
    event = AclChangedEvent(3, (AclChange("add", AG, "7", "3"), AclChange("remove", UT, "42", "5")))
    text = (
        '{"version": 3, "changes": ['
        '{"op": "add", "relation": "agent_group", "subject_id": "7", "object_id": "3"}, '
        '{"op": "remove", "relation": "user_team", "subject_id": "42", "object_id": "5"}]}'
    )
    assert event.to_json() == text
    assert parse_acl_event(text.encode()) == event


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"\xff",
        b"[]",
        b'{"version": 1}',
        b'{"version": 0, "changes": []}',
        b'{"version": true, "changes": []}',
        b'{"version": 1, "changes": {}}',
        b'{"version": 1, "changes": [{"op": "set", "relation": "user_team",'
        b' "subject_id": "1", "object_id": "2"}]}',
        b'{"version": 1, "changes": [{"op": "add", "relation": "friends",'
        b' "subject_id": "1", "object_id": "2"}]}',
        b'{"version": 1, "changes": [{"op": "add", "relation": "user_team",'
        b' "subject_id": 1, "object_id": "2"}]}',
        b'{"version": 1, "changes": [{"op": "add"}]}',
    ],
)
def test_malformed_events_are_refused(data: bytes) -> None:
    """Anything but the documented event shape raises ValueError."""
    with pytest.raises(ValueError, match="acl event"):
        parse_acl_event(data)


def test_may_affect_names_the_rooms_a_change_touches() -> None:
    """may_affect is True exactly for the (principal, room) pairs whose decision can change."""
    U, A = PrincipalKind.USER, PrincipalKind.AGENT
    agent_group = AclChange("add", AG, "7", "3")
    assert may_affect(agent_group, U, "42", "agent-7")
    assert may_affect(agent_group, A, "7", "group-3")
    assert not may_affect(agent_group, U, "42", "agent-8")
    assert not may_affect(agent_group, A, "8", "group-3")
    user_group = AclChange("remove", UG, "42", "3")
    assert may_affect(user_group, U, "42", "agent-99")
    assert may_affect(user_group, U, "42", "group-3")
    assert not may_affect(user_group, U, "42", "group-4")
    assert not may_affect(user_group, U, "43", "agent-99")
    assert not may_affect(user_group, U, "42", "system")
    user_team = AclChange("add", UT, "42", "5")
    assert may_affect(user_team, U, "42", "team-5")
    assert not may_affect(user_team, U, "42", "team-6")
    assert not may_affect(user_team, A, "42", "team-5")
    assert not may_affect(user_team, U, "42", "Team-5")


def test_cache_expires_and_refuses_stale_generations() -> None:
    """Cached reads expire after the TTL; a read begun before an invalidation is not stored."""
    now = [100.0]
    cache = AclCache(1.0, clock=lambda: now[0])
    key = (AG, "7")
    cache.put(key, frozenset({"3"}), cache.generation)
    assert cache.get(key) == frozenset({"3"})
    now[0] += 1.0
    assert cache.get(key) is None
    started = cache.generation
    cache.invalidate([key])
    cache.put(key, frozenset({"3"}), started)
    assert cache.get(key) is None
    assert not AclCache(0).enabled
