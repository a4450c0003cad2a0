"""Clients that stay away too long, and HTTP-fallback affinity, through the real stack: a client
offline past the room history gets `recovered: false` with the count it missed; one whose room
history was lost (new epoch) gets `recovered: false` without a count; an SSE session is only
reachable through its gateway, which the affinity cookie selects."""

from __future__ import annotations

import contextlib
import json

import httpx
import pytest
from roomgate_common import keys
from roomgate_common.publisher import Publisher
from roomgate_common.redis_adapter import connect
from roomgate_tools.client import RoomgateClient
from roomgate_tools.stack import AFFINITY_COOKIE, LocalStack

from tests.faults.conftest import USER_PERMS, wait_until

pytestmark = pytest.mark.timeout(90)


async def test_offline_past_history_is_not_recovered_and_says_how_many_were_missed(
    shared_stack: LocalStack,
) -> None:
    """Back after more messages than the history holds: recovered=false, missed=N, then live again."""
    stack = shared_stack
    redis = connect(stack.redis_url)
    client = RoomgateClient(stack.ws_url(), stack.token("301", perms=USER_PERMS), rooms=["tasks"])
    try:
        publisher = Publisher(redis, sender="fault-test", history="*=10:0")
        await client.start(within=15)
        first = [await publisher.publish("tasks", "task_progress", {"n": i}) for i in range(2)]
        await wait_until(lambda: len(client.ids("tasks")) == 2, 10, "two live messages")
        await client.stop()  # offline
        for i in range(300):  # far past the history of 10 (trimmed in whole stream nodes)
            await publisher.publish("tasks", "task_progress", {"n": 2 + i})
        await client.start(within=15)
        state = client.rooms["tasks"]
        assert state.recoveries[-1]["recovered"] is False
        assert state.lost == [(first[0].epoch, 300)]
        live = await publisher.publish("tasks", "task_progress", {"n": "live"})
        await wait_until(lambda: live.id in client.ids("tasks"), 10, "live after the loss")
        assert client.ids("tasks") == [m.id for m in first] + [live.id]
    finally:
        await client.stop()
        await redis.aclose()


async def test_lost_history_means_new_epoch_and_unknown_count(shared_stack: LocalStack) -> None:
    """The room's history and position were lost (a new epoch): recovered=false without a count."""
    stack = shared_stack
    redis = connect(stack.redis_url)
    client = RoomgateClient(stack.ws_url(), stack.token("302", perms=USER_PERMS), rooms=["system"])
    try:
        publisher = Publisher(redis, sender="fault-test")
        await client.start(within=15)
        before = await publisher.publish("system", "metrics_update", {"n": 0})
        await wait_until(lambda: before.id in client.ids("system"), 10, "a live message")
        await client.stop()
        await redis.delete(keys.room_meta("system"), keys.room_history("system"))
        after = await publisher.publish("system", "metrics_update", {"n": 1})
        assert after.epoch != before.epoch
        await client.start(within=15)
        recovery = client.rooms["system"].recoveries[-1]
        assert recovery["recovered"] is False and "missed" not in recovery
        assert recovery["epoch"] == after.epoch
        assert client.rooms["system"].lost == [(after.epoch, None)]
        live = await publisher.publish("system", "metrics_update", {"n": 2})
        await wait_until(lambda: live.id in client.ids("system"), 10, "live in the new epoch")
    finally:
        await client.stop()
        await redis.aclose()


async def test_sse_session_lives_on_the_gateway_its_cookie_names(shared_stack: LocalStack) -> None:
    """Through HAProxy: POSTs with the affinity cookie reach the session; without it, the other gateway answers 404."""
    stack = shared_stack
    token = stack.token("303", perms=USER_PERMS)
    async with (
        httpx.AsyncClient(base_url=stack.lb_http, timeout=10) as sticky,
        httpx.AsyncClient(base_url=stack.lb_http, timeout=10) as stray,
    ):
        request = sticky.build_request("GET", "/sse", params={"token": token})
        response = await sticky.send(request, stream=True)
        try:
            lines = response.aiter_lines()
            assert response.headers["content-type"].startswith("text/event-stream")
            gateway = response.cookies.get(AFFINITY_COOKIE)
            assert gateway in stack.config.gateway_ids
            session: dict[str, str] = {}
            async for line in lines:
                if line.startswith("data: "):
                    session = json.loads(line[6:])
                    break
            headers = {"X-Roomgate-Session-Secret": session["secret"]}
            body = b'{"type":"ping"}'
            for _ in range(4):  # the cookie jar sends roomgate-affinity each time
                posted = await sticky.post(session["post"], content=body, headers=headers)
                assert posted.status_code == 202
            strays = []
            for _ in range(4):  # no cookie: HAProxy's round robin picks the gateway
                stray.cookies.clear()
                posted = await stray.post(session["post"], content=body, headers=headers)
                strays.append(posted.status_code)
            assert 404 in strays and set(strays) <= {202, 404}, strays  # round robin
        finally:
            with contextlib.suppress(Exception):
                await response.aclose()
