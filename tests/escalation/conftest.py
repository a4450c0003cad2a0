"""Escalation fixtures: in-process replicas (real Redis, real gRPC on 127.0.0.1:0) and
helpers that read what was published into rooms."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from roomgate.escalation.v1 import escalation_pb2_grpc as pb_grpc
from roomgate_auth.server import AuthServer
from roomgate_auth.settings import AuthSettings
from roomgate_auth.tokens import api_key_digest
from roomgate_common import keys
from roomgate_common.identity import Principal, PrincipalKind
from roomgate_escalation.policy import PolicyConfig
from roomgate_escalation.server import EscalationReplica
from roomgate_escalation.settings import EscalationSettings

from tests.gateway.conftest import ADMIN, AUDIENCE, ISSUER, SECRET

POLICY = {
    "default_policy": "standard",
    "targets": {"ops-team": ["team-7"]},
    "policies": {
        "standard": {
            "critical": [
                {"delay": 0.1, "targets": ["ops-team"]},
                {"delay": 0.1, "targets": ["role-oncall_lead", "user-42"]},
            ],
        },
        "slow": {"critical": [{"delay": 3600, "targets": ["team-9"]}]},
    },
}

FAST = {
    "escalation_poll_interval": 0.02,
    "escalation_lease_ms": 2000,
    "escalation_reclaim_interval": 0.1,
    "escalation_reclaim_idle_ms": 3000,
    "shutdown_grace": 2.0,
}

MakeReplica = Callable[..., Awaitable[EscalationReplica]]

# The gateway's API key in these tests; auth knows its digest (ROOMGATE_SERVICE_KEYS).
GATEWAY_KEY = "rgs_test-gateway-key-0123456789"
SERVICE_KEYS = f"gateway:escalation={api_key_digest(GATEWAY_KEY)}"


@pytest.fixture
async def escalation_auth(redis_url: str) -> AsyncIterator[AuthServer]:
    """A real auth service the replicas verify callers with (same keys as the gateway
    stack's auth: tokens of one are valid at the other)."""
    auth = AuthServer(
        AuthSettings.from_env(
            listen="127.0.0.1:0",
            redis_url=redis_url,
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            jwt_hs256_secret=SECRET,
            admin_secret=ADMIN,
            service_keys=SERVICE_KEYS,
            metrics_listen="",
            redis_check_interval=0,
            shutdown_grace=0.5,
        )
    )
    await auth.start()
    yield auth
    await auth.stop()


def caller_token(
    auth: AuthServer, sid: str = "test-caller", perms: tuple[str, ...] = ("escalation",)
) -> str:
    """A service token the replicas accept (``perms`` must hold ``escalation``)."""
    token, _ = auth.policy.mint(Principal(kind=PrincipalKind.SERVICE, id=sid, permissions=perms))
    return token


def caller_metadata(auth: AuthServer, sid: str = "test-caller") -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {caller_token(auth, sid)}"),)


class _Bearer(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds a service token to every call of a test channel."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), ("authorization", f"Bearer {self.token}")]
        return await continuation(details._replace(metadata=metadata), request)


def caller_channel(auth: AuthServer, port: int) -> grpc.aio.Channel:
    """A channel to a replica whose calls carry a valid service token."""
    return grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", interceptors=[_Bearer(caller_token(auth))]
    )


@pytest.fixture
async def make_replica(redis_url: str, escalation_auth: AuthServer) -> AsyncIterator[MakeReplica]:
    """Start replicas on demand; every one is stopped at the end of the test."""
    replicas: list[EscalationReplica] = []

    async def make(**overrides: Any) -> EscalationReplica:
        settings = EscalationSettings.from_env(
            redis_url=redis_url,
            auth_addr=f"127.0.0.1:{escalation_auth.port}",
            escalation_listen="127.0.0.1:0",
            escalation_consumer_name=f"test-{len(replicas)}",
            **{**FAST, **overrides},
        )
        replica = EscalationReplica(settings, config=PolicyConfig.from_mapping(POLICY))
        await replica.start()
        replicas.append(replica)
        return replica

    yield make
    for replica in replicas:
        if replica.port:
            await replica.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def stub_for(
    escalation_auth: AuthServer,
) -> AsyncIterator[Callable[[int], pb_grpc.EscalationServiceStub]]:
    """Stubs whose calls carry a valid service token."""
    channels: list[grpc.aio.Channel] = []

    def make(port: int) -> pb_grpc.EscalationServiceStub:
        channel = caller_channel(escalation_auth, port)
        channels.append(channel)
        return pb_grpc.EscalationServiceStub(channel)

    yield make
    for channel in channels:
        await channel.close()


async def room_events(
    redis: aioredis.Redis, room: str, type_: str | None = None
) -> list[dict[str, Any]]:
    """The envelopes in a room's history (oldest first), optionally of one type."""
    out = []
    for _id, fields in await redis.xrange(keys.room_history(room)):
        envelope = json.loads(fields[b"m"])
        if type_ is None or envelope["type"] == type_:
            out.append(envelope)
    return out


async def wait_for(
    check: Callable[[], Awaitable[Any]], timeout: float = 15.0, interval: float = 0.02
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def escalation_counts(events: list[dict[str, Any]]) -> dict[tuple[str, int], int]:
    counts: dict[tuple[str, int], int] = {}
    for event in events:
        key = (event["data"]["alert_id"], event["data"]["level"])
        counts[key] = counts.get(key, 0) + 1
    return counts
