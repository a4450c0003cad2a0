"""The publish APIs' fast path (issue 12): a verified service token is kept (credentials.py)
until its expiry, a revocation or a subscriber reconnect; room decisions are kept
AUTHZ_CACHE_TTL; ``POST /api/v1/publish/batch`` publishes many events in one round trip."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import httpx
import pytest
from roomgate.auth.v1 import auth_pb2, auth_pb2_grpc
from roomgate_common import keys
from roomgate_common.bearer import bearer_token
from roomgate_common.credentials import CredentialCache
from roomgate_common.revocation import Revocation

from tests.gateway.conftest import ADMIN, Stack, recv_until, send

pytestmark = pytest.mark.timeout(60)

TASK = {"room": "tasks", "type": "task_progress", "data": {"task_id": 1, "progress": 5}}


def authentications(stack: Stack) -> float:
    total = 0.0
    for metric in stack.auth.registry.collect():
        for sample in metric.samples:
            if sample.name == "roomgate_auth_authentications_total":
                total += sample.value
    return total


def service(stack: Stack, name: str = "task-executor") -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token(name, kind='service', perms=('publish',))}"}


# --------------------------------------------------------------------------- pure parts
class _P:
    def __init__(self, id_: str, jti: str, issued_at: int, expires_at: int) -> None:
        self.id, self.token_id, self.issued_at, self.expires_at = id_, jti, issued_at, expires_at


def test_credential_cache_keeps_until_ttl_expiry_or_revocation() -> None:
    now = [1000.0]
    cache: CredentialCache[Any] = CredentialCache(
        30, 2, kind_of=lambda _p: "service", clock=lambda: now[0]
    )
    a, b = _P("svc-a", "j1", 990, 1010), _P("svc-b", "j2", 990, 5000)
    cache.put("token-a", a)
    cache.put("token-b", b)
    assert cache.get("token-a") is a and cache.get("token-b") is b
    assert cache.get("token-c") is None
    now[0] = 1010.0  # a's own expiry comes before the TTL
    assert cache.get("token-a") is None
    assert cache.get("token-b") is b
    now[0] = 1030.0  # b: verified at 1000, TTL 30
    assert cache.get("token-b") is None
    cache.put("token-b", b)
    assert cache.revoke(Revocation(kind="service", id="svc-b", jti="other", before=0)) == 0
    assert cache.revoke(Revocation(kind="service", id="svc-b", jti="j2", before=0)) == 1
    assert cache.get("token-b") is None


def test_credential_cache_is_bounded_and_can_be_off() -> None:
    cache: CredentialCache[Any] = CredentialCache(30, 2, kind_of=lambda _p: "service")
    far = 2**40
    for n in range(3):
        cache.put(f"t{n}", _P(f"s{n}", f"j{n}", 0, far))
    assert len(cache) == 2 and cache.get("t0") is None and cache.get("t2") is not None
    off: CredentialCache[Any] = CredentialCache(0, 2, kind_of=lambda _p: "service")
    off.put("t", _P("s", "j", 0, far))
    assert off.get("t") is None


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER  abc ", "abc"),
        ("Basic abc", ""),
        ("Bearer", ""),
        ("Bearerabc", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_one_bearer_parser_case_insensitive(value: str | None, token: str) -> None:
    assert bearer_token(value) == token


# --------------------------------------------------------------------------- the gateway
async def test_a_verified_token_skips_auth_until_it_is_revoked(stack: Stack) -> None:
    """Five publishes cost one Authenticate; a revocation is honoured at the next call."""
    headers = service(stack)
    before = authentications(stack)
    async with httpx.AsyncClient(base_url=stack.http) as http:
        for _ in range(5):
            ok = await http.post("/api/v1/publish", json=TASK, headers=headers)
            assert ok.status_code == 202, ok.text
        assert authentications(stack) - before == 1
        async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.auth.port}") as channel:
            auth = auth_pb2_grpc.AuthServiceStub(channel)
            await auth.RevokeToken(
                auth_pb2.RevokeTokenRequest(token=headers["Authorization"][7:]),
                metadata=(("authorization", f"Bearer {ADMIN}"),),
            )
        for _ in range(50):  # the revocation event reaches the gateway through Redis
            if not len(stack.gateway.publish_credentials):
                break
            await asyncio.sleep(0.02)
        refused = await http.post("/api/v1/publish", json=TASK, headers=headers)
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "unauthorized")


async def test_a_reconnect_of_the_subscriber_forgets_kept_tokens(stack: Stack) -> None:
    """Revocation events may be missed while the subscriber is away: all verified again."""
    async with httpx.AsyncClient(base_url=stack.http) as http:
        ok = await http.post("/api/v1/publish", json=TASK, headers=service(stack))
        assert ok.status_code == 202
    assert len(stack.gateway.publish_credentials) == 1
    await stack.gateway.catch_up()
    assert len(stack.gateway.publish_credentials) == 0


@pytest.mark.gateway_settings(publish_credential_ttl=0)
async def test_with_the_cache_off_every_call_is_verified(stack: Stack) -> None:
    headers = service(stack)
    before = authentications(stack)
    async with httpx.AsyncClient(base_url=stack.http) as http:
        for _ in range(3):
            assert (await http.post("/api/v1/publish", json=TASK, headers=headers)).is_success
    assert authentications(stack) - before == 3


async def test_batch_publish_delivers_every_event_in_order(stack: Stack) -> None:
    """One request, 30 events into two rooms: 202 with each one's id/offset, in order; a
    subscriber gets them all, in that order."""
    ws = await stack.connect()
    for room in ("tasks", "system"):
        await send(ws, {"type": "subscribe", "data": {"room": room}})
        await recv_until(ws, lambda m, r=room: m["type"] == "subscribed")
    events = [
        {**TASK, "data": {"task_id": n}}
        if n % 2
        else {"room": "system", "type": "metrics_update", "data": {"n": n}}
        for n in range(30)
    ]
    async with httpx.AsyncClient(base_url=stack.http) as http:
        ok = await http.post(
            "/api/v1/publish/batch", json={"events": events}, headers=service(stack)
        )
    assert ok.status_code == 202, ok.text
    assert stack.gateway.metrics.api_publishes.labels("published")._value.get() == 30
    results = ok.json()["results"]
    assert [r["room"] for r in results] == [e["room"] for e in events]
    for room in ("tasks", "system"):
        offsets = [r["offset"] for r in results if r["room"] == room]
        assert offsets == list(range(offsets[0], offsets[0] + 15))
    got = [
        await recv_until(ws, lambda m: m["type"] in ("task_progress", "metrics_update"))
        for _ in events
    ]
    assert [m["id"] for m in got] == [r["id"] for r in results]
    assert got[1]["sender"] == "task-executor"


async def test_batch_publish_refuses_wholly_and_says_which_event(stack: Stack) -> None:
    """One refused event refuses the batch (nothing published) and names it; limits hold."""
    headers = service(stack)
    async with httpx.AsyncClient(base_url=stack.http) as http:
        bad_room = [TASK, {**TASK, "room": "nowhere"}]
        denied = await http.post(
            "/api/v1/publish/batch", json={"events": bad_room}, headers=headers
        )
        assert denied.status_code == 403
        assert denied.json()["error"]["message"].startswith("events[1]:")
        bad_type = [TASK, TASK, {**TASK, "type": "teleport"}]
        unknown = await http.post(
            "/api/v1/publish/batch", json={"events": bad_type}, headers=headers
        )
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (400, "unknown_type")
        assert unknown.json()["error"]["message"].startswith("events[2]:")
        too_many = {"events": [TASK] * (stack.settings.publish_batch_max + 1)}
        big = await http.post("/api/v1/publish/batch", json=too_many, headers=headers)
        assert (big.status_code, big.json()["error"]["code"]) == (400, "batch_too_large")
        empty = await http.post("/api/v1/publish/batch", json={"events": []}, headers=headers)
        assert (empty.status_code, empty.json()["error"]["code"]) == (400, "batch_too_large")
        huge = {"events": [{**TASK, "data": {"x": "y" * (stack.settings.publish_batch_max_bytes)}}]}
        over = await http.post("/api/v1/publish/batch", content=json.dumps(huge), headers=headers)
        assert over.status_code == 413
        anonymous = await http.post("/api/v1/publish/batch", json={"events": [TASK]})
        assert anonymous.status_code == 401
    refused = stack.gateway.metrics.api_publishes
    assert refused.labels("permission_denied")._value.get() == 1
    assert refused.labels("batch_too_large")._value.get() == 2
    assert refused.labels("published")._value.get() == 0
    history = await stack.gateway.redis.xlen(keys.room_history("tasks"))
    assert history == 0  # nothing of the refused batches was published
