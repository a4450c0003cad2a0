"""AuthenticateBatch, real parts only (AuthServer on 127.0.0.1:0, grpc.aio, redis-server):
every token of a batch gets exactly the verdict Authenticate gives it alone."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest
from prometheus_client import CollectorRegistry
from roomgate.auth.v1 import auth_pb2
from roomgate_tools.procs import RedisProcess

from .conftest import (
    ADMIN,
    OTHER_SECRET,
    Keys,
    Running,
    claims,
    hs256,
    running,
    settings_for,
    signed,
    user,
)
from .test_server import rejection
from .test_tokens import FORGED

Verdict = tuple[str, str]  # ("ok", principal id), ("rejected", reason), ("failed", code)


async def alone(auth: Running, token: str) -> Verdict:
    """What the unary Authenticate says about ``token``."""
    try:
        return "ok", (await auth.authenticate(token)).id
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.UNAUTHENTICATED:
            return "failed", exc.code().name
        return "rejected", exc.details() or ""


async def batched(auth: Running, tokens: list[str]) -> list[Verdict]:
    """What one AuthenticateBatch says about each of ``tokens``, in order."""
    reply = await auth.stub.AuthenticateBatch(auth_pb2.AuthenticateBatchRequest(tokens=tokens))
    assert len(reply.results) == len(tokens)
    verdicts: list[Verdict] = []
    for result in reply.results:
        which = result.WhichOneof("result")
        assert which in ("principal", "rejected")
        verdicts.append(
            ("ok", result.principal.id) if which == "principal" else ("rejected", result.rejected)
        )
    return verdicts


async def revoked_token(auth: Running) -> str:
    token = await auth.issue(user("60"))
    await auth.stub.RevokeToken(auth_pb2.RevokeTokenRequest(token=token))
    return token


async def revoked_principal(auth: Running) -> str:
    """A token of user 61 issued before a RevokeAll of that user."""
    token = await auth.issue(user("61"))
    await auth.stub.RevokeAll(
        auth_pb2.RevokeAllRequest(kind=auth_pb2.PRINCIPAL_KIND_USER, id="61"), metadata=ADMIN
    )
    return token


def now() -> int:
    return int(time.time())


Make = Callable[[Running, Keys], Awaitable[str]]


def sync(make: Callable[[Keys], str]) -> Make:
    async def build(_auth: Running, k: Keys) -> str:
        return make(k)

    return build


# name, token maker, expected verdict (alone and in a batch)
TABLE: list[tuple[str, Make, Verdict]] = [
    ("valid HS256", sync(lambda k: hs256(claims(sub="50"))), ("ok", "50")),
    ("valid RS256", sync(lambda k: signed(k.rsa1, claims(sub="51"))), ("ok", "51")),
    ("valid EdDSA", sync(lambda k: signed(k.ed2, claims(sub="52"))), ("ok", "52")),
    ("issued by the service", lambda a, k: a.issue(user("53")), ("ok", "53")),
    ("expired", sync(lambda k: hs256(claims(exp=now() - 30, iat=now() - 600))), ("rejected", "expired")),
    ("wrong signature", sync(lambda k: hs256(claims(), OTHER_SECRET)), ("rejected", "bad_signature")),
    ("revoked token", lambda a, k: revoked_token(a), ("rejected", "revoked")),
    ("revoked-before principal", lambda a, k: revoked_principal(a), ("rejected", "revoked")),
    ("malformed", sync(lambda k: "garbage"), ("rejected", "malformed")),
    ("empty", sync(lambda k: ""), ("rejected", "malformed")),
    ("too long", sync(lambda k: hs256(claims(roles=["r"] * 4000))), ("rejected", "malformed")),
    ("unknown kid", sync(lambda k: signed(k.rsa1, claims(), kid="nope")), ("rejected", "unknown_key")),
    ("wrong audience", sync(lambda k: hs256(claims(aud="other"))), ("rejected", "wrong_audience")),
]  # fmt: skip


async def test_each_token_gets_the_verdict_it_gets_alone(auth: Running, keys: Keys) -> None:
    """A table of tokens (valid, expired, wrong signature, revoked, revoked-before, malformed,
    too long, ...): alone and in one shuffled batch with duplicates, the same verdict."""
    names = [name for name, _, _ in TABLE]
    tokens = [await make(auth, keys) for _, make, _ in TABLE]
    expected = [verdict for _, _, verdict in TABLE]
    assert [await alone(auth, t) for t in tokens] == expected
    assert await batched(auth, tokens) == expected
    order = [*range(len(tokens)), *range(len(tokens))]  # every token twice
    random.Random(12).shuffle(order)
    got = await batched(auth, [tokens[i] for i in order])
    for position, i in enumerate(order):
        assert got[position] == expected[i], names[i]


async def test_every_forged_token_is_rejected_in_a_batch(auth: Running, keys: Keys) -> None:
    """Each token of the forgery table keeps its own reason among valid tokens."""
    tokens = [make(keys) for _, make, _ in FORGED]
    valid = hs256(claims(sub="77"))
    got = await batched(auth, [valid, *tokens, valid])
    assert got[0] == got[-1] == ("ok", "77")
    for (name, _, reason), verdict in zip(FORGED, got[1:-1], strict=True):
        assert verdict == ("rejected", reason.value), name


async def test_a_batch_returns_the_full_principal(auth: Running) -> None:
    """A principal in a batch carries the same fields as Authenticate's."""
    token = hs256(claims(sub="42"))
    reply = await auth.stub.AuthenticateBatch(auth_pb2.AuthenticateBatchRequest(tokens=[token]))
    assert reply.results[0].principal == await auth.authenticate(token)


async def test_batch_size_limit(redis_url: str, keys: Keys) -> None:
    """More tokens than ROOMGATE_MAX_BATCH is INVALID_ARGUMENT saying the limit; at the
    limit all are answered; an empty batch is empty."""
    async with running(settings_for(redis_url, keys, max_batch=3)) as auth:
        token = hs256(claims())
        error = await rejection(
            auth.stub.AuthenticateBatch(auth_pb2.AuthenticateBatchRequest(tokens=[token] * 4))
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == "at most 3 tokens per AuthenticateBatch, got 4"
        assert await batched(auth, [token] * 3) == [("ok", "42")] * 3
        assert await batched(auth, []) == []


async def test_a_batch_above_the_grpc_message_limit_is_refused(auth: Running) -> None:
    """Below ROOMGATE_MAX_BATCH tokens, a request above 1 MiB (the gRPC receive limit of
    every service) is RESOURCE_EXHAUSTED, before the handler; at 1 MiB less a little it
    is answered."""
    big = "x" * 8000  # malformed: only its size matters
    error = await rejection(
        auth.stub.AuthenticateBatch(auth_pb2.AuthenticateBatchRequest(tokens=[big] * 132))
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await batched(auth, [big] * 130) == [("rejected", "malformed")] * 130


def counts(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (s.labels["outcome"], s.labels["reason"]): s.value
        for metric in registry.collect()
        if metric.name == "roomgate_auth_authentications"
        for s in metric.samples
        if s.name.endswith("_total")
    }


async def test_batch_counts_each_token_by_outcome(auth: Running) -> None:
    """roomgate_auth_authentications_total counts every token of a batch by its outcome."""
    before = counts(auth.server.registry)
    await batched(auth, [hs256(claims()), "garbage", "x.y", hs256(claims(), OTHER_SECRET)])
    after = counts(auth.server.registry)
    delta = {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}
    assert delta == {("ok", ""): 1, ("rejected", "malformed"): 2, ("rejected", "bad_signature"): 1}


def histogram(registry: CollectorRegistry, name: str) -> tuple[float, float]:
    """(count, sum) of the histogram ``name``."""
    samples = {
        s.name: s.value
        for metric in registry.collect()
        if metric.name == name
        for s in metric.samples
    }
    return samples[f"{name}_count"], samples[f"{name}_sum"]


async def test_each_batched_token_is_timed_with_its_batch(auth: Running) -> None:
    """authenticate_seconds (the dashboard's auth latency) observes every token of a batch
    with its batch's time; authenticate_batch_seconds and _tokens observe the call once."""
    registry = auth.server.registry
    names = (
        "roomgate_auth_authenticate_seconds",
        "roomgate_auth_authenticate_batch_seconds",
        "roomgate_auth_authenticate_batch_tokens",
    )
    before = [histogram(registry, name) for name in names]
    await batched(auth, [hs256(claims())] * 4 + ["garbage"])
    (tokens, token_time), (calls, call_time), (batches, batch_tokens) = (
        (count - count0, total - total0)
        for (count, total), (count0, total0) in zip(
            (histogram(registry, name) for name in names), before, strict=True
        )
    )
    assert (tokens, calls, batches, batch_tokens) == (5, 1, 1, 5)
    assert call_time > 0
    assert token_time == pytest.approx(5 * call_time)


@pytest.mark.timeout(30)
async def test_redis_down_fails_the_batch_unless_no_token_needs_it(
    own_redis: RedisProcess, keys: Keys
) -> None:
    """Redis down: a batch with a verified token is UNAVAILABLE (as Authenticate of it is);
    a batch of forgeries is still answered, each with its reason, as each is alone."""
    async with running(settings_for(own_redis.url, keys, redis_check_interval=0)) as auth:
        token = hs256(claims())
        assert await batched(auth, [token]) == [("ok", "42")]
        own_redis.stop()
        error = await rejection(
            auth.stub.AuthenticateBatch(auth_pb2.AuthenticateBatchRequest(tokens=["x", token]))
        )
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert token not in (error.details() or "")
        forged = ["garbage", hs256(claims(), OTHER_SECRET)]
        assert await batched(auth, forged) == [
            ("rejected", "malformed"),
            ("rejected", "bad_signature"),
        ]
        assert [await alone(auth, t) for t in forged] == await batched(auth, forged)
