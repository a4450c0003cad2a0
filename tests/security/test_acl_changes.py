"""Finding 3: an ACL change re-checks every subscription roomauthz's ``may_affect`` names."""

from __future__ import annotations

import grpc
import pytest
from roomgate.roomauthz.v1 import roomauthz_pb2, roomauthz_pb2_grpc

from tests.gateway.conftest import ADMIN, Stack, recv, recv_until, send

pytestmark = pytest.mark.timeout(30)


async def test_agent_removed_from_group_loses_its_group_room(stack: Stack) -> None:
    """Removing agent A from group G evicts A's own `group-G` subscription (reason given)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.authz.port}") as channel:
        admin = roomauthz_pb2_grpc.AclAdminServiceStub(channel)
        entry = roomauthz_pb2.AclEntry(
            relation=roomauthz_pb2.RELATION_AGENT_GROUP, subject_id="7", object_id="3"
        )
        md = (("authorization", f"Bearer {ADMIN}"),)
        await admin.ChangeAcl(roomauthz_pb2.ChangeAclRequest(add=[entry]), metadata=md)
        agent = await stack.connect(stack.token("7", kind="agent", perms=()))
        await send(agent, {"type": "subscribe", "data": {"room": "group-3"}})
        assert (await recv(agent))["type"] == "subscribed"
        await admin.ChangeAcl(roomauthz_pb2.ChangeAclRequest(remove=[entry]), metadata=md)
        evicted = await recv_until(agent, lambda m: m["type"] == "unsubscribed", timeout=5)
    assert evicted["room"] == "group-3"
    assert evicted["data"]["reason"] == "not_member"
    await stack.publish("group-3", "group_update", {"n": 1})
    assert await recv(agent, timeout=0.5, default=None) is None
