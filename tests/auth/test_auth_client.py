"""The gateway's AuthClient against a real auth service (AuthServer on 127.0.0.1:0, real
Redis): concurrent tokens coalesce into AuthenticateBatch calls, a lone token goes at once,
the breaker counts calls, and an auth service without AuthenticateBatch is still used."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry
from roomgate.auth.v1 import auth_pb2_grpc
from roomgate_auth.service import AuthMetrics, AuthServicer
from roomgate_auth.store import AuthStore
from roomgate_common.redis_adapter import connect
from roomgate_gateway.breaker import BreakerState
from roomgate_gateway.clients import AuthClient, AuthRejected, PeerUnavailable, Principal
from roomgate_tools.procs import free_port

from .conftest import OTHER_SECRET, Keys, Running, claims, hs256, settings_for

pytestmark = pytest.mark.timeout(30)


@asynccontextmanager
async def client_of(addr: str, **options: int) -> AsyncIterator[AuthClient]:
    client = AuthClient(
        addr, timeout=2.0, breaker_failures=options.pop("breaker_failures", 5),
        breaker_recovery=60.0, **options,
    )  # fmt: skip
    try:
        yield client
    finally:
        await client.close()


def batch_sizes(auth: Running) -> tuple[float, float]:
    """(AuthenticateBatch calls, tokens in them) the auth service has handled."""
    histogram = auth.server.metrics.batch_tokens
    samples = {s.name: s.value for metric in histogram.collect() for s in metric.samples}
    return samples["roomgate_auth_authenticate_batch_tokens_count"], samples[
        "roomgate_auth_authenticate_batch_tokens_sum"
    ]


async def outcome(client: AuthClient, token: str) -> str:
    try:
        principal = await client.authenticate(token)
    except AuthRejected as exc:
        return f"rejected:{exc.reason}"
    except PeerUnavailable:
        return "unavailable"
    assert isinstance(principal, Principal)
    return f"ok:{principal.id}"


async def test_concurrent_tokens_go_in_one_call(auth: Running) -> None:
    """Ten tokens asked for in one loop turn are one AuthenticateBatch call, each with its
    own answer."""
    tokens = [hs256(claims(sub=str(100 + i))) for i in range(8)]
    tokens += ["garbage", hs256(claims(), OTHER_SECRET)]
    async with client_of(f"127.0.0.1:{auth.server.port}") as client:
        got = await asyncio.gather(*(outcome(client, t) for t in tokens))
    assert got == [f"ok:{100 + i}" for i in range(8)] + [
        "rejected:malformed",
        "rejected:bad_signature",
    ]
    assert batch_sizes(auth) == (1, 10)


async def test_a_lone_token_is_sent_without_waiting(auth: Running) -> None:
    """A single connect is a batch of one whose call starts in the next loop iteration
    (no timer, no waiting for company)."""
    async with client_of(f"127.0.0.1:{auth.server.port}") as client:
        task = asyncio.create_task(client.authenticate(hs256(claims())))
        await asyncio.sleep(0)  # the task runs authenticate: the launch is scheduled
        await asyncio.sleep(0)  # the launch ran: the call is under way
        assert len(client._in_flight) == 1
        assert (await task).id == "42"
    assert batch_sizes(auth) == (1, 1)


async def test_batches_hold_at_most_batch_max(auth: Running) -> None:
    """Seven tokens with batch_max=3 and one call in flight: calls of 3, 3 and 1."""
    async with client_of(f"127.0.0.1:{auth.server.port}", batch_max=3, calls_in_flight=1) as client:
        tokens = [hs256(claims(sub=str(200 + i))) for i in range(7)]
        got = await asyncio.gather(*(outcome(client, t) for t in tokens))
    assert got == [f"ok:{200 + i}" for i in range(7)]
    assert batch_sizes(auth) == (3, 7)


async def test_tokens_beyond_max_waiting_fail_at_once(auth: Running) -> None:
    """max_waiting=2: two tokens may wait for the next call; the third asked for in the
    same turn is unavailable at once, without a call."""
    async with client_of(f"127.0.0.1:{auth.server.port}", max_waiting=2) as client:
        tokens = [hs256(claims(sub=str(250 + i))) for i in range(3)]
        got = await asyncio.gather(*(outcome(client, t) for t in tokens))
    assert got == ["ok:250", "ok:251", "unavailable"]
    assert batch_sizes(auth) == (1, 2)


async def test_the_breaker_counts_calls_not_tokens() -> None:
    """Ten tokens failing in one unreachable call are one breaker failure; the second
    failed call opens the circuit (breaker_failures=2), then tokens fail fast."""
    async with client_of(f"127.0.0.1:{free_port()}", breaker_failures=2) as client:
        tokens = [hs256(claims(sub=str(300 + i))) for i in range(10)]
        assert await asyncio.gather(*(outcome(client, t) for t in tokens)) == ["unavailable"] * 10
        assert (client.breaker.failures, client.breaker.state) == (1, BreakerState.CLOSED)
        assert await asyncio.gather(*(outcome(client, t) for t in tokens)) == ["unavailable"] * 10
        assert (client.breaker.failures, client.breaker.state) == (2, BreakerState.OPEN)
        with pytest.raises(PeerUnavailable, match="circuit open"):
            await client.authenticate(tokens[0])


async def test_a_too_long_token_costs_no_call() -> None:
    """A token over max_token_bytes is `malformed` at once: no call, no breaker change."""
    async with client_of(f"127.0.0.1:{free_port()}", max_token_bytes=512) as client:
        with pytest.raises(AuthRejected, match="malformed"):
            await client.authenticate("a" * 513)
        assert (client.breaker.failures, len(client._in_flight)) == (0, 0)


class UnaryOnlyServicer(AuthServicer):
    """An auth service from before AuthenticateBatch (the generated base answers
    UNIMPLEMENTED)."""

    AuthenticateBatch = auth_pb2_grpc.AuthServiceServicer.AuthenticateBatch  # type: ignore[assignment]


async def test_an_auth_service_without_batches_gets_unary_calls(redis_url: str, keys: Keys) -> None:
    """UNIMPLEMENTED (an older auth service, mid-upgrade): the batch's tokens go as unary
    Authenticate calls, each with its own answer."""
    settings = settings_for(redis_url, keys)
    policy = settings.build_policy()
    redis = connect(redis_url, name="test-auth")
    metrics = AuthMetrics(CollectorRegistry())
    server = grpc.aio.server()
    auth_pb2_grpc.add_AuthServiceServicer_to_server(
        UnaryOnlyServicer(policy, AuthStore(redis, policy), "", metrics), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with client_of(f"127.0.0.1:{port}") as client:
            got = await asyncio.gather(
                outcome(client, hs256(claims(sub="400"))), outcome(client, "garbage")
            )
            assert got == ["ok:400", "rejected:malformed"]
            assert client.breaker.state is BreakerState.CLOSED
            # from then on unary calls only: no batch is tried (and refused) again
            assert client._unary_only
            assert await outcome(client, hs256(claims(sub="401"))) == "ok:401"
        calls = {
            (s.labels["outcome"], s.labels["reason"]): s.value
            for metric in metrics.authentications.collect()
            for s in metric.samples
            if s.name.endswith("_total")
        }
        assert calls == {("ok", ""): 2, ("rejected", "malformed"): 1}
    finally:
        await server.stop(None)
        await redis.aclose()


async def test_a_closed_client_fails_its_callers(auth: Running) -> None:
    """A call that cannot even start (the channel is closed: shutdown) fails every caller
    of its batch with PeerUnavailable; none waits forever, and no task is left with an
    exception nobody retrieves."""
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    try:
        async with client_of(f"127.0.0.1:{auth.server.port}") as client:
            await client.close()
            tokens = [hs256(claims(sub=str(500 + i))) for i in range(3)]
            got = await asyncio.gather(*(outcome(client, t) for t in tokens))
            assert got == ["unavailable"] * 3
            assert len(client._in_flight) == 0
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert unhandled == []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class BusyHealth(health_pb2_grpc.HealthServicer):
    """A health service that answers ``status`` after ``delay`` seconds (an auth service
    busy verifying a reconnect storm answers its checks late)."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.status = health_pb2.HealthCheckResponse.SERVING

    async def Check(  # type: ignore[override]
        self, request: health_pb2.HealthCheckRequest, context: object
    ) -> health_pb2.HealthCheckResponse:
        await asyncio.sleep(self.delay)
        return health_pb2.HealthCheckResponse(status=self.status)


async def test_readiness_outlives_a_slow_health_check_for_the_grace(
    redis_url: str, keys: Keys
) -> None:
    """/readyz's auth check (AuthClient.ready): a SERVING answer is ready; a check that
    times out is ready while auth's last good answer (a check or an AuthenticateBatch) is
    within the grace, and not after; NOT_SERVING and an unreachable auth are not ready at
    once, whatever came before."""
    settings = settings_for(redis_url, keys)
    policy = settings.build_policy()
    redis = connect(redis_url, name="test-auth")
    health = BusyHealth()
    server = grpc.aio.server()
    auth_pb2_grpc.add_AuthServiceServicer_to_server(
        AuthServicer(policy, AuthStore(redis, policy), "", AuthMetrics(CollectorRegistry())),
        server,
    )
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    clock = Clock()
    client = AuthClient(
        f"127.0.0.1:{port}", timeout=2.0, breaker_failures=5, breaker_recovery=60.0,
        ready_grace=10.0, clock=clock,
    )  # fmt: skip
    try:
        health.delay = 0.5
        assert await client.ready(within=0.1) is False  # slow, and never answered before
        assert await outcome(client, hs256(claims(sub="600"))) == "ok:600"  # auth answered
        assert await client.ready(within=0.1) is True
        clock.now += 10.5
        assert await client.ready(within=0.1) is False  # slow beyond the grace
        health.delay = 0.0
        assert await client.ready(within=0.1) is True
        health.status = health_pb2.HealthCheckResponse.NOT_SERVING
        assert await client.ready(within=0.1) is False
        health.delay, health.status = 0.5, health_pb2.HealthCheckResponse.SERVING
        assert await client.ready(within=0.1) is False  # a refusal is not outlived
        assert await outcome(client, hs256(claims(sub="601"))) == "ok:601"
        await server.stop(None)
        assert await client.ready(within=1.0) is False  # unreachable: refused, at once
    finally:
        await client.close()
        await server.stop(None)
        await redis.aclose()
