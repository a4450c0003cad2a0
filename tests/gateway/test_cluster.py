"""Redis Cluster mode (`redis+cluster://`): gateways and publishers on a real 3-master
cluster; room messages travel over sharded pub/sub (SPUBLISH/SSUBSCRIBE on the shard that
owns the room's slot) and reach subscribers on every gateway. (auth and roomauthz keep
their own single Redis here: their cluster mode is not part of this test.)"""

from __future__ import annotations

import redis.asyncio as aioredis
from roomgate_common import keys
from roomgate_common.publisher import Publisher
from roomgate_common.redis_adapter import connect
from roomgate_tools.procs import RedisClusterProcess

from tests.gateway.conftest import (
    recv,
    running_stack,
    send,
)
from tests.gateway.test_fanout import second_gateway


async def test_fanout_over_sharded_pubsub(
    redis_url: str, redis_cluster: RedisClusterProcess
) -> None:
    """Two gateways on a cluster: one publish reaches both, through the owning shard's channel."""
    cluster = connect(redis_cluster.url)
    await cluster.flushall()  # type: ignore[call-arg]
    async with (
        running_stack(redis_cluster.url, services_url=redis_url) as stack,
        second_gateway(stack) as two,
    ):
        rooms = ["system", "tasks", "alerts"]  # spread over the shards
        a = await stack.connect(stack.token("1", perms=("view_system", "view_tasks")))
        b = await two.connect(stack.token("2", perms=("view_system", "view_tasks")))
        for ws in (a, b):
            for room in rooms:
                await send(ws, {"type": "subscribe", "data": {"room": room}})
                assert (await recv(ws))["type"] == "subscribed"
        owners = set()
        for room in rooms:
            node = cluster.get_node_from_key(keys.room_channel(room))  # type: ignore[attr-defined]
            owners.add(node.name)
            direct = aioredis.Redis(host=node.host, port=node.port)
            _, count = await direct.execute_command(
                "PUBSUB", "SHARDNUMSUB", keys.room_channel(room)
            )
            await direct.aclose()
            assert int(count) == 2  # one sharded subscription per gateway, on the owning shard
        assert len(owners) >= 2
        publisher = Publisher(cluster, sender="t")
        sent = [await publisher.publish(room, "metrics_update", {"room": room}) for room in rooms]
        for ws in (a, b):
            got = {(m["room"], m["id"]) for m in [await recv(ws) for _ in rooms]}
            assert got == {(s.room, s.id) for s in sent}
    await cluster.aclose()


async def test_limits_work_on_a_cluster(redis_url: str, redis_cluster: RedisClusterProcess) -> None:
    """Per-IP and per-user counts live on different shards; the limits still hold."""
    cluster = connect(redis_cluster.url)
    await cluster.flushall()  # type: ignore[call-arg]
    await cluster.aclose()
    async with running_stack(
        redis_cluster.url, services_url=redis_url, max_connections_per_user=1
    ) as stack:
        await stack.connect(stack.token("42"))
        import websockets

        ws = await websockets.connect(f"{stack.url}?token={stack.token('42')}")
        err = await recv(ws)
        assert err["data"]["code"] == "connection_limit"
