"""Restart Redis (AOF on) while publishing: publishes fail loudly while it is down, every
publish that was accepted is in the room history and reaches the clients afterwards, and
the gateways, auth and roomauthz reconnect by themselves and are ready again."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from roomgate_common.publisher import Publisher
from roomgate_common.redis_adapter import connect
from roomgate_tools.stack import LocalStack, http_status

from tests.faults.conftest import (
    ROOMS,
    Accepted,
    assert_exactly_once_in_order,
    history_ids,
    publish_http,
    publish_redis,
    resilient_clients,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)

DOWN_SECONDS = 1.5
HEALTH_NAMES = {
    "auth": ("", "roomgate.auth.v1.AuthService"),
    "roomauthz": (
        "",
        "roomgate.roomauthz.v1.RoomAuthzService",
        "roomgate.roomauthz.v1.AclAdminService",
    ),
}


async def serving(address: str, service: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def all_ready(stack: LocalStack) -> dict[str, bool]:
    checks: dict[str, bool] = {}
    for gid, url in stack.gateway_http.items():
        checks[gid] = await asyncio.to_thread(http_status, f"{url}/readyz") == 200
    for name, services in HEALTH_NAMES.items():
        address = stack.component(name).address
        for service in services:
            checks[f"{name}:{service or 'overall'}"] = await serving(address, service)
    return checks


async def test_redis_restart_loses_no_accepted_message(local_stack: LocalStack) -> None:
    """Redis down then up under load: refusals are loud, accepted messages are all kept and delivered, every service recovers."""
    stack = local_stack
    clients = resilient_clients(stack, stack.ws_url(), 4, first_user=200)
    redis = connect(stack.redis_url)
    http = httpx.AsyncClient(timeout=5)
    try:
        for client in clients:
            await client.start(within=15)
        publisher = Publisher(redis, sender="fault-test")
        service = stack.token("backend", kind="service", perms=("publish",))
        lb_publish = f"{stack.lb_http}/api/v1/publish"
        accepted = Accepted()
        stop = asyncio.Event()

        async def publish() -> None:
            for n in itertools.count():
                if stop.is_set():
                    return
                room = ROOMS[(n // 2) % 2]
                if n % 2:  # half through the HTTP API behind HAProxy, into both rooms
                    await publish_http(http, lb_publish, service, room, n, accepted)
                else:
                    await publish_redis(publisher, room, n, accepted)
                await asyncio.sleep(0.01)

        publishing = asyncio.create_task(publish())
        await wait_until(lambda: accepted.count >= 40, 15, "40 messages published")
        server = stack.component("redis").process
        server.stop()  # SIGTERM: redis-server writes its AOF and exits
        await asyncio.sleep(0.3)  # publishes answered before the stop finish recording
        refused_before = len(accepted.refused)
        accepted_while_down = accepted.count
        await asyncio.sleep(DOWN_SECONDS)
        assert accepted.count == accepted_while_down, "a publish was accepted while Redis was down"
        assert len(accepted.refused) > refused_before, "no publish failed while Redis was down"
        server.start()  # same port, same data directory: the AOF is replayed
        restarted = time.monotonic()
        mark = accepted.count
        await wait_until(lambda: accepted.count >= mark + 60, 20, "publishing accepted again")
        stop.set()
        await publishing

        assert not accepted.unexpected, accepted.unexpected
        assert {r.split("_")[0] for r in accepted.refused} <= {"bus", "http"}
        for room in ROOMS:
            kept = set(await history_ids(redis, room))
            lost = set(accepted.ids(room)) - kept
            assert not lost, f"{room}: {len(lost)} accepted messages missing from history"
        expected = {room: accepted.ids(room) for room in ROOMS}

        def complete() -> bool:
            return all(set(expected[r]) <= set(c.ids(r)) for c in clients for r in ROOMS)

        await wait_until(complete, 20, "every client has every accepted message")
        for client in clients:
            for room in ROOMS:
                assert_exactly_once_in_order(client, room, expected[room])

        dead = [c.name for c in stack.components if not c.process.running]
        assert not dead, f"crashed after the Redis restart: {dead}"
        checks: dict[str, bool] = {}
        while time.monotonic() - restarted < 15:
            checks = await all_ready(stack)
            if all(checks.values()):
                break
            await asyncio.sleep(0.2)
        assert all(checks.values()), f"not ready 15 s after the restart: {checks}"
    finally:
        for client in clients:
            await client.stop()
        await http.aclose()
        with contextlib.suppress(Exception):
            await redis.aclose()
