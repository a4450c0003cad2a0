"""The roomauthz gRPC service against a real redis-server and a real grpc.aio server on
127.0.0.1:0, called through a real client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from roomgate.auth.v1 import auth_pb2
from roomgate.roomauthz.v1 import roomauthz_pb2 as pb
from roomgate.roomauthz.v1 import roomauthz_pb2_grpc as pb_grpc
from roomgate_common import keys
from roomgate_common.errors import ConfigurationError
from roomgate_roomauthz.server import SERVICE_NAMES, RoomAuthzServer
from roomgate_roomauthz.settings import RoomAuthzSettings
from roomgate_tools.procs import RedisProcess

ADMIN = "test-admin-secret"
ADMIN_MD = (("authorization", f"Bearer {ADMIN}"),)
SUB, PUB = pb.ACTION_SUBSCRIBE, pb.ACTION_PUBLISH
AG, UG, UT = pb.RELATION_AGENT_GROUP, pb.RELATION_USER_GROUP, pb.RELATION_USER_TEAM


def settings(redis_url: str, **kw: object) -> RoomAuthzSettings:
    values: dict[str, object] = {
        "listen": "127.0.0.1:0",
        "redis_url": redis_url,
        "admin_secret": ADMIN,
        "shutdown_grace": 0.5,
        **kw,
    }
    return RoomAuthzSettings.from_env(**values)


async def started(s: RoomAuthzSettings) -> RoomAuthzServer:
    server = RoomAuthzServer(s)
    await server.start()
    await asyncio.wait_for(server.listener.subscribed.wait(), 5)
    return server


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[RoomAuthzServer]:
    s = await started(settings(redis_url))
    yield s
    await s.stop(0.5)


@pytest.fixture
async def channel(server: RoomAuthzServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


def user(id: str = "42", **kw: object) -> auth_pb2.Principal:
    return auth_pb2.Principal(kind=auth_pb2.PRINCIPAL_KIND_USER, id=id, **kw)  # type: ignore[arg-type]


def agent(id: str = "7", **kw: object) -> auth_pb2.Principal:
    return auth_pb2.Principal(kind=auth_pb2.PRINCIPAL_KIND_AGENT, id=id, **kw)  # type: ignore[arg-type]


async def authorize(
    ch: grpc.aio.Channel,
    principal: auth_pb2.Principal,
    room: str,
    action: int = SUB,
    type_: str = "",
) -> pb.Decision:
    stub = pb_grpc.RoomAuthzServiceStub(ch)
    reply = await stub.Authorize(
        pb.AuthorizeRequest(principal=principal, room=room, action=action, message_type=type_)  # type: ignore[arg-type]
    )
    return reply.decision


def entry(relation: int, subject: str, obj: str) -> pb.AclEntry:
    return pb.AclEntry(relation=relation, subject_id=subject, object_id=obj)  # type: ignore[arg-type]


async def change(
    ch: grpc.aio.Channel,
    add: list[pb.AclEntry] | None = None,
    remove: list[pb.AclEntry] | None = None,
) -> int:
    stub = pb_grpc.AclAdminServiceStub(ch)
    reply = await stub.ChangeAcl(pb.ChangeAclRequest(add=add, remove=remove), metadata=ADMIN_MD)
    return reply.version


async def test_authorize_allows_and_denies_with_reason(channel: grpc.aio.Channel) -> None:
    """Authorize answers allowed or denied with the policy's reason, echoing the request."""
    allowed = await authorize(channel, user(permissions=["view_system"]), "alerts")
    assert (allowed.allowed, allowed.reason, allowed.room, allowed.action) == (
        True, "allowed", "alerts", SUB,
    )  # fmt: skip
    denied = await authorize(channel, user(), "alerts")
    assert (denied.allowed, denied.reason) == (False, "missing_permission")
    unknown = await authorize(channel, user(permissions=["view_agents"]), "agents/../x")
    assert (unknown.allowed, unknown.reason) == (False, "unknown_room")
    published = await authorize(channel, agent("7"), "agent-7", PUB, "agent_status")
    assert (published.allowed, published.message_type) == (True, "agent_status")
    refused = await authorize(channel, agent("7"), "agents", PUB, "alert_triggered")
    assert (refused.allowed, refused.reason) == (False, "type_not_allowed")


@pytest.mark.parametrize(
    ("request_", "detail"),
    [
        (pb.AuthorizeRequest(room="system", action=SUB), "principal"),
        (
            pb.AuthorizeRequest(principal=auth_pb2.Principal(id="42"), room="system", action=SUB),
            "principal",
        ),
        (
            pb.AuthorizeRequest(principal=auth_pb2.Principal(kind=1), room="system", action=SUB),
            "principal",
        ),
        (pb.AuthorizeRequest(principal=user(), room="system"), "action"),
        (pb.AuthorizeRequest(principal=user(), room="system", action=7), "action"),  # type: ignore[arg-type]
    ],
)
async def test_bad_requests_are_invalid_argument(
    channel: grpc.aio.Channel, request_: pb.AuthorizeRequest, detail: str
) -> None:
    """A missing principal (kind and id) or an unknown action is INVALID_ARGUMENT."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await pb_grpc.RoomAuthzServiceStub(channel).Authorize(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert detail in (err.value.details() or "")


async def test_authorize_many_keeps_request_order(channel: grpc.aio.Channel) -> None:
    """AuthorizeMany answers every item in request order; a bad action spoils only its item."""
    await change(channel, add=[entry(AG, "7", "3")])
    rooms = ["user-42", "agent-7", "system", "lobby", "agent-8", "team-5", "agents", "role-ops"]
    items = [pb.RoomAction(room=r, action=SUB) for r in rooms]
    items.append(pb.RoomAction(room="agents", action=PUB, message_type="agent_status"))
    items.append(pb.RoomAction(room="agents", action=pb.ACTION_UNSPECIFIED))
    request = pb.AuthorizeManyRequest(
        principal=user("42", group_ids=["3"], team_ids=["5"], roles=["ops"]), items=items
    )
    reply = await pb_grpc.RoomAuthzServiceStub(channel).AuthorizeMany(request)
    assert [(d.room, d.reason) for d in reply.decisions] == [
        ("user-42", "allowed"),
        ("agent-7", "allowed"),
        ("system", "missing_permission"),
        ("lobby", "unknown_room"),
        ("agent-8", "not_in_agent_group"),
        ("team-5", "allowed"),
        ("agents", "missing_permission"),
        ("role-ops", "allowed"),
        ("agents", "publish_not_allowed"),
        ("agents", "invalid_action"),
    ]
    assert reply.decisions[8].message_type == "agent_status"


async def test_authorize_many_limits_batch(redis_url: str) -> None:
    """More items than ROOMGATE_MAX_BATCH is INVALID_ARGUMENT; an empty batch is empty."""
    server = await started(settings(redis_url, max_batch=3))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            stub = pb_grpc.RoomAuthzServiceStub(ch)
            items = [pb.RoomAction(room="system", action=SUB)] * 4
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.AuthorizeMany(pb.AuthorizeManyRequest(principal=user(), items=items))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            empty = await stub.AuthorizeMany(pb.AuthorizeManyRequest(principal=user()))
            assert list(empty.decisions) == []
    finally:
        await server.stop(0.5)


async def test_authorize_batch_decides_many_principals_in_order(channel: grpc.aio.Channel) -> None:
    """AuthorizeBatch answers independent requests of different principals in request
    order, each with its own principal's decision; a bad action spoils only its request."""
    await change(channel, add=[entry(AG, "7", "3")])
    requests = [
        pb.AuthorizeRequest(principal=user("42", group_ids=["3"]), room="agent-7", action=SUB),
        pb.AuthorizeRequest(principal=user("43"), room="agent-7", action=SUB),
        pb.AuthorizeRequest(principal=user("43"), room="user-43", action=SUB),
        pb.AuthorizeRequest(principal=user("44"), room="user-43", action=SUB),
        pb.AuthorizeRequest(
            principal=user("42"), room="agents", action=PUB, message_type="agent_status"
        ),
        pb.AuthorizeRequest(principal=user("42"), room="agents", action=pb.ACTION_UNSPECIFIED),
    ]
    reply = await pb_grpc.RoomAuthzServiceStub(channel).AuthorizeBatch(
        pb.AuthorizeBatchRequest(requests=requests)
    )
    assert [(d.room, d.allowed, d.reason) for d in reply.decisions] == [
        ("agent-7", True, "allowed"),
        ("agent-7", False, "not_in_agent_group"),
        ("user-43", True, "allowed"),
        ("user-43", False, "not_owner"),
        ("agents", False, "publish_not_allowed"),
        ("agents", False, "invalid_action"),
    ]
    assert reply.decisions[4].message_type == "agent_status"


async def test_authorize_batch_limits_and_validates(redis_url: str) -> None:
    """More requests than ROOMGATE_MAX_BATCH, or one without a principal, is INVALID_ARGUMENT."""
    server = await started(settings(redis_url, max_batch=3))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            stub = pb_grpc.RoomAuthzServiceStub(ch)
            one = pb.AuthorizeRequest(principal=user(), room="system", action=SUB)
            for requests in ([one] * 4, [one, pb.AuthorizeRequest(room="system", action=SUB)]):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.AuthorizeBatch(pb.AuthorizeBatchRequest(requests=requests))
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            empty = await stub.AuthorizeBatch(pb.AuthorizeBatchRequest())
            assert list(empty.decisions) == []
    finally:
        await server.stop(0.5)


async def next_messages(pubsub: aioredis.client.PubSub, wait: float = 0.3) -> list[bytes]:
    """Every message that arrives on ``pubsub`` within ``wait`` seconds."""
    found: list[bytes] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while (left := deadline - loop.time()) > 0:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
        if message is not None:
            found.append(message["data"])
    return found


async def test_acl_change_changes_decisions_and_publishes_one_event(
    channel: grpc.aio.Channel, redis_url: str
) -> None:
    """Adding then removing an ACL entry flips the decision at once, bumps the version and
    publishes exactly one event per change with the documented JSON."""
    bus = aioredis.Redis.from_url(redis_url)
    pubsub = bus.pubsub()
    await pubsub.subscribe(keys.ACL_CHANGED_CHANNEL)
    try:
        viewer = user("42", group_ids=["3"])
        assert (await authorize(channel, viewer, "agent-7")).reason == "not_in_agent_group"

        v1 = await change(channel, add=[entry(AG, "7", "3")])
        assert (await authorize(channel, viewer, "agent-7")).allowed
        assert await next_messages(pubsub) == [
            b'{"version": 1, "changes": [{"op": "add", "relation": "agent_group",'
            b' "subject_id": "7", "object_id": "3"}]}'
        ]

        v2 = await change(channel, remove=[entry(AG, "7", "3")], add=[entry(UT, "42", "5")])
        assert v2 == v1 + 1 == 2
        assert (await authorize(channel, viewer, "agent-7")).reason == "not_in_agent_group"
        assert (await authorize(channel, user("42"), "team-5")).allowed
        [raw] = await next_messages(pubsub)
        assert json.loads(raw) == {
            "version": 2,
            "changes": [
                {"op": "remove", "relation": "agent_group", "subject_id": "7", "object_id": "3"},
                {"op": "add", "relation": "user_team", "subject_id": "42", "object_id": "5"},
            ],
        }
        assert int(await bus.get(keys.ACL_VERSION)) == 2
    finally:
        await pubsub.aclose()
        await bus.aclose()


async def test_noop_change_publishes_nothing(channel: grpc.aio.Channel, redis_url: str) -> None:
    """Re-adding an entry or removing a missing one changes nothing: no event, same version."""
    v1 = await change(channel, add=[entry(UG, "42", "3")])
    bus = aioredis.Redis.from_url(redis_url)
    pubsub = bus.pubsub()
    await pubsub.subscribe(keys.ACL_CHANGED_CHANNEL)
    try:
        assert await change(channel, add=[entry(UG, "42", "3")], remove=[entry(UG, "1", "1")]) == v1
        assert await next_messages(pubsub) == []
    finally:
        await pubsub.aclose()
        await bus.aclose()


async def test_list_acl_filters_and_reports_version(channel: grpc.aio.Channel) -> None:
    """ListAcl lists every entry sorted, or one relation, or one subject, with the version."""
    stub = pb_grpc.AclAdminServiceStub(channel)
    version = await change(
        channel,
        add=[entry(AG, "10", "3"), entry(AG, "7", "3"), entry(AG, "7", "4"), entry(UT, "42", "5")],
    )

    def rows(reply: pb.ListAclResponse) -> list[tuple[int, str, str]]:
        return [(e.relation, e.subject_id, e.object_id) for e in reply.entries]

    everything = await stub.ListAcl(pb.ListAclRequest(), metadata=ADMIN_MD)
    assert everything.version == version
    assert rows(everything) == [
        (AG, "7", "3"), (AG, "7", "4"), (AG, "10", "3"), (UT, "42", "5"),
    ]  # fmt: skip
    agents = await stub.ListAcl(pb.ListAclRequest(relation=AG), metadata=ADMIN_MD)
    assert len(agents.entries) == 3
    one = await stub.ListAcl(pb.ListAclRequest(relation=AG, subject_id="7"), metadata=ADMIN_MD)
    assert rows(one) == [(AG, "7", "3"), (AG, "7", "4")]
    await change(channel, remove=[entry(AG, "7", "3"), entry(AG, "7", "4")])
    after = await stub.ListAcl(pb.ListAclRequest(relation=AG), metadata=ADMIN_MD)
    assert rows(after) == [(AG, "10", "3")]


@pytest.mark.parametrize(
    "metadata", [(), (("authorization", "Bearer wrong"),), (("authorization", ADMIN),)]
)
async def test_admin_api_needs_the_admin_credential(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]
) -> None:
    """ChangeAcl and ListAcl without the exact admin bearer credential are PERMISSION_DENIED."""
    stub = pb_grpc.AclAdminServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ChangeAcl(pb.ChangeAclRequest(add=[entry(AG, "7", "3")]), metadata=metadata)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListAcl(pb.ListAclRequest(), metadata=metadata)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    listing = await stub.ListAcl(pb.ListAclRequest(), metadata=ADMIN_MD)
    assert list(listing.entries) == []


@pytest.mark.parametrize(
    "request_",
    [
        pb.ChangeAclRequest(add=[entry(pb.RELATION_UNSPECIFIED, "7", "3")]),
        pb.ChangeAclRequest(add=[entry(AG, "07", "3")]),
        pb.ChangeAclRequest(add=[entry(AG, "7", "-3")]),
        pb.ChangeAclRequest(remove=[entry(UG, "", "3")]),
        pb.ChangeAclRequest(add=[entry(AG, "7", "3")], remove=[entry(AG, "7", "3")]),
    ],
)
async def test_invalid_acl_changes_are_refused(
    channel: grpc.aio.Channel, request_: pb.ChangeAclRequest
) -> None:
    """Bad relations, non-canonical ids and contradictory changes are INVALID_ARGUMENT."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await pb_grpc.AclAdminServiceStub(channel).ChangeAcl(request_, metadata=ADMIN_MD)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_event_invalidates_another_replicas_cache(redis_url: str) -> None:
    """A replica with a long cache TTL sees a change made through another replica at once
    (the invalidation event drops its cached ACL reads)."""
    a = await started(settings(redis_url))
    b = await started(settings(redis_url, acl_cache_ttl=60))
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as ch_a,
            grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as ch_b,
        ):
            viewer = user("42")
            assert (await authorize(ch_b, viewer, "group-3")).reason == "not_member"
            assert len(b.cache) == 1
            await change(ch_a, add=[entry(UG, "42", "3")])
            for _ in range(100):
                if (await authorize(ch_b, viewer, "group-3")).allowed:
                    break
                await asyncio.sleep(0.01)
            else:
                pytest.fail("replica b still uses its cached ACL read")
            assert b.listener.events_seen == 1
    finally:
        await a.stop(0.5)
        await b.stop(0.5)


async def test_policy_file_overrides_a_rule(redis_url: str, tmp_path: Path) -> None:
    """A policy file named by the settings changes which permission a room kind needs."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("subscribe:\n  alerts:\n    - permission: view_alerts\n")
    server = await started(settings(redis_url, policy_file=str(policy)))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            old = await authorize(ch, user(permissions=["view_system"]), "alerts")
            assert (old.allowed, old.reason) == (False, "missing_permission")
            assert (await authorize(ch, user(permissions=["view_alerts"]), "alerts")).allowed
            assert (await authorize(ch, user(permissions=["view_system"]), "system")).allowed
    finally:
        await server.stop(0.5)


def test_invalid_policy_file_fails_at_start(redis_url: str, tmp_path: Path) -> None:
    """A policy file with an unknown room kind stops the service from starting."""
    policy = tmp_path / "policy.json"
    policy.write_text('{"subscribe": {"lobby": []}}')
    with pytest.raises(ConfigurationError, match="unknown room kind"):
        RoomAuthzServer(settings(redis_url, policy_file=str(policy)))


async def health(ch: grpc.aio.Channel, service: str) -> int:
    reply = await health_pb2_grpc.HealthStub(ch).Check(
        health_pb2.HealthCheckRequest(service=service)
    )
    return reply.status


async def test_redis_down_is_unavailable(own_redis: RedisProcess) -> None:
    """With Redis stopped, decisions that need ACL data and admin calls are UNAVAILABLE and the
    services report NOT_SERVING; decisions without ACL reads still answer."""
    server = await started(settings(own_redis.url, acl_cache_ttl=0))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            assert (await authorize(ch, user(), "agent-7")).reason == "not_in_agent_group"
            own_redis.stop()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await authorize(ch, user(), "agent-7")
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await change(ch, add=[entry(AG, "7", "3")])
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert (await authorize(ch, user(permissions=["view_system"]), "system")).allowed
            for _ in range(100):
                if await health(ch, SERVICE_NAMES[0]) == health_pb2.HealthCheckResponse.NOT_SERVING:
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("still SERVING with Redis down")
            assert await health(ch, "") == health_pb2.HealthCheckResponse.SERVING
            own_redis.start()
            await asyncio.wait_for(server.listener.subscribed.wait(), 10)
            assert await health(ch, SERVICE_NAMES[0]) == health_pb2.HealthCheckResponse.SERVING
            assert (await authorize(ch, user(), "agent-7")).reason == "not_in_agent_group"
    finally:
        await server.stop(0.5)


async def test_health_serving_then_not_serving_on_stop(redis_url: str) -> None:
    """Every service name is SERVING while running and turns NOT_SERVING when stop begins."""
    server = await started(settings(redis_url))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        for name in ["", *SERVICE_NAMES]:
            assert await health(ch, name) == health_pb2.HealthCheckResponse.SERVING
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=""))
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.create_task(server.stop(1.0))
        second = await watch.read()
        assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        await stopping


async def test_reflection_lists_both_services(channel: grpc.aio.Channel) -> None:
    """Server reflection names RoomAuthzService, AclAdminService and health."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    reply = await call.read()
    await call.done_writing()
    names = {s.name for s in reply.list_services_response.service}
    assert {*SERVICE_NAMES, "grpc.health.v1.Health"} <= names


async def test_decisions_are_counted(server: RoomAuthzServer, channel: grpc.aio.Channel) -> None:
    """The decisions metric counts by action and reason."""
    await authorize(channel, user(), "system")
    await authorize(channel, user(), "system")
    await authorize(channel, user(), "lobby")
    value = server.registry.get_sample_value
    labels = {"action": "subscribe", "reason": "missing_permission"}
    assert value("roomgate_roomauthz_decisions_total", labels) == 2
    assert (
        value(
            "roomgate_roomauthz_decisions_total", {"action": "subscribe", "reason": "unknown_room"}
        )
        == 1
    )
    assert value("roomgate_roomauthz_decision_seconds_count", {"method": "Authorize"}) == 3
