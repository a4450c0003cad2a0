"""roomgate_common.redis_adapter.TurnPipeline against a real redis-server: the commands of
one loop turn are one pipeline, each caller gets its own reply or error, a script Redis
forgot is sent again by the store, and a Redis that is gone fails every caller with
BusUnavailable (never a redis exception, never a caller left waiting)."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ResponseError
from roomgate_common.errors import BusUnavailable
from roomgate_common.redis_adapter import TurnPipeline, connect
from roomgate_gateway.store import GatewayStore
from roomgate_tools.procs import free_port

pytestmark = pytest.mark.timeout(30)


async def test_one_turns_commands_are_one_pipeline(redis_url: str) -> None:
    """200 commands asked for in one turn: two pipelines of at most 100, every reply to
    its own caller, in order of the keys."""
    redis = connect(redis_url, name="test-pipe")
    sizes: list[int] = []
    pipe = TurnPipeline(redis, max_commands=100, observe=sizes.append)
    try:
        replies = await asyncio.gather(*(pipe.call("INCRBY", f"k{i}", i) for i in range(200)))
        assert replies == list(range(200))
        assert sizes == [100, 100]
        assert await pipe.call("GET", "k7") == b"7"  # a lone command: a pipeline of one
        assert sizes == [100, 100, 1]
    finally:
        await pipe.close()
        await redis.aclose()


async def test_a_commands_error_is_its_callers_alone(redis_url: str) -> None:
    redis = connect(redis_url, name="test-pipe")
    pipe = TurnPipeline(redis)
    try:
        await redis.set("text", "not a number")
        ok, bad = await asyncio.gather(
            pipe.call("INCR", "counter"), pipe.call("INCR", "text"), return_exceptions=True
        )
        assert ok == 1
        assert isinstance(bad, ResponseError)
    finally:
        await pipe.close()
        await redis.aclose()


async def test_a_redis_that_is_gone_fails_every_caller_translated() -> None:
    redis = connect(f"redis://127.0.0.1:{free_port()}/0", name="test-pipe", retries=0)
    pipe = TurnPipeline(redis)
    try:
        got = await asyncio.gather(
            *(pipe.call("GET", "x") for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(g, BusUnavailable) for g in got), got
        assert len({id(g) for g in got}) == 5  # each caller its own exception
    finally:
        await pipe.close()
        await redis.aclose()


async def test_the_store_sends_a_forgotten_script_again(redis_url: str) -> None:
    """After SCRIPT FLUSH (a restarted or failed-over Redis) a pipelined EVALSHA gets
    NOSCRIPT; the store sends the script itself and the caller gets the answer."""
    sizes: list[int] = []
    store = GatewayStore(
        connect(redis_url, name="test-pipe"), "gw-test", pipeline_sizes=sizes.append
    )
    try:
        assert await store.per_window("rate-key", 120) == 1
        await store.redis.script_flush()
        counts = await asyncio.gather(*(store.per_window("rate-key", 120) for _ in range(3)))
        assert sorted(counts) == [2, 3, 4]  # each fell back on its own: any order
        assert await store.per_window("rate-key", 120) == 5
        assert sizes == [1, 3, 1]  # the fallbacks went directly, not pipelined
    finally:
        await store.close()


async def test_a_closed_pipeline_fails_its_callers_at_once(redis_url: str) -> None:
    """Closing (shutdown) fails the commands not sent yet and any later one with
    BusUnavailable: no caller waits forever, nothing is sent on a closing client."""
    redis = connect(redis_url, name="test-pipe")
    sizes: list[int] = []
    pipe = TurnPipeline(redis, observe=sizes.append)
    try:
        queued = pipe.call("SET", "after-close", "1")  # asked for, not sent yet
        await pipe.close()
        with pytest.raises(BusUnavailable):
            await queued
        with pytest.raises(BusUnavailable):
            await pipe.call("GET", "x")
        await asyncio.sleep(0.05)  # the flush that was scheduled has run: it sent nothing
        assert sizes == []
        assert await redis.exists("after-close") == 0
    finally:
        await redis.aclose()


async def test_the_store_holds_pipelines_to_redis_pipeline_max(redis_url: str) -> None:
    """REDIS_PIPELINE_MAX reaches the store's pipeline: 5 rates of one turn with a bound of 2
    are pipelines of 2, 2 and 1, each caller with its own count."""
    sizes: list[int] = []
    store = GatewayStore(
        connect(redis_url, name="test-pipe"), "gw-test", pipeline_max=2, pipeline_sizes=sizes.append
    )
    try:
        counts = await asyncio.gather(*(store.per_window(f"rate-{i}", 120) for i in range(5)))
        assert counts == [1, 1, 1, 1, 1]
        assert sizes == [2, 2, 1]
    finally:
        await store.close()
