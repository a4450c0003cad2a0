"""The auth gRPC service, real parts only: AuthServer on 127.0.0.1:0, a real grpc.aio
client, a real redis-server."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from pathlib import Path

import grpc
import jwt
import pytest
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from jwt.algorithms import RSAAlgorithm
from roomgate.auth.v1 import auth_pb2
from roomgate_auth.errors import Reason
from roomgate_auth.service import SERVICE_NAME
from roomgate_common import keys as rkeys
from roomgate_tools.procs import RedisProcess

from .conftest import (
    ADMIN,
    Keys,
    Running,
    claims,
    hs256,
    running,
    settings_for,
    signed,
    user,
)
from .test_tokens import FORGED


async def rejection(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_authenticate_returns_the_principal(auth: Running) -> None:
    """A valid token gives its principal over gRPC."""
    token_claims = claims()
    principal = await auth.authenticate(hs256(token_claims))
    assert principal.kind == auth_pb2.PRINCIPAL_KIND_USER
    assert (principal.id, principal.session_id) == ("42", "7")
    assert list(principal.roles) == ["operator"]
    assert list(principal.permissions) == ["view_system"]
    assert (list(principal.group_ids), list(principal.team_ids)) == (["3"], ["7"])
    assert principal.expires_at == token_claims["exp"]
    assert principal.issued_at == token_claims["iat"]
    assert principal.token_id == token_claims["jti"]


async def test_every_forged_token_is_unauthenticated_with_its_reason(
    auth: Running, keys: Keys
) -> None:
    """Over gRPC each forged token answers UNAUTHENTICATED whose details are the bare reason."""
    for name, make, reason in FORGED:
        error = await rejection(auth.authenticate(make(keys)))
        assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, reason.value), (
            name
        )


async def test_rs256_and_eddsa_keys_rotate(auth: Running, keys: Keys) -> None:
    """Tokens of both RSA and both Ed25519 keys are accepted, each by its kid."""
    for pair in keys.all:
        assert (await auth.authenticate(signed(pair, claims()))).id == "42"


async def test_jwks_file_keys_are_trusted(redis_url: str, keys: Keys, tmp_path: Path) -> None:
    """ROOMGATE_JWKS_FILE alone is enough to verify RS256 tokens."""
    jwk = {**RSAAlgorithm.to_jwk(keys.rsa1.private.public_key(), as_dict=True), "kid": "jw1"}
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    settings = settings_for(
        redis_url,
        keys,
        jwt_hs256_secret="",
        jwt_public_keys="",
        jwks_file=str(tmp_path / "jwks.json"),
    )
    async with running(settings) as service:
        assert (await service.authenticate(signed(keys.rsa1, claims(), kid="jw1"))).id == "42"
        error = await rejection(service.authenticate(hs256(claims())))
        assert error.details() == Reason.ALGORITHM_NOT_ALLOWED


async def test_rs256_issuing_with_a_signing_key(redis_url: str, keys: Keys) -> None:
    """With a signing key file the service issues RS256 tokens it verifies, no HS256 needed."""
    settings = settings_for(
        redis_url,
        keys,
        jwt_hs256_secret="",
        jwt_public_keys="",
        jwt_signing_key_file=str(keys.root / f"{keys.rsa2.kid}.key"),
        jwt_signing_kid=keys.rsa2.kid,
    )
    async with running(settings) as service:
        token = await service.issue(user("5"))
        assert token.count(".") == 2
        principal = await service.authenticate(token)
        assert principal.id == "5"


async def test_issue_token_needs_the_admin_credential(auth: Running) -> None:
    """IssueToken without or with a wrong admin credential is PERMISSION_DENIED."""
    request = auth_pb2.IssueTokenRequest(principal=user())
    for metadata in [(), (("authorization", "Bearer wrong"),), (("authorization", "Basic x"),)]:
        error = await rejection(auth.stub.IssueToken(request, metadata=metadata))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_issue_token_with_admin_credential(auth: Running) -> None:
    """The admin gets a token whose principal Authenticate returns, with a fresh session."""
    response = await auth.stub.IssueToken(
        auth_pb2.IssueTokenRequest(
            principal=user("42", roles=["admin"], group_ids=["3"]), ttl_seconds=120
        ),
        metadata=ADMIN,
    )
    principal = await auth.authenticate(response.token)
    assert principal == response.principal
    assert principal.session_id.isdigit()
    assert int(principal.session_id) < 2**53
    assert 110 <= principal.expires_at - time.time() <= 121


async def test_issue_token_refuses_invalid_principals(auth: Running) -> None:
    """An invalid principal in IssueToken is INVALID_ARGUMENT."""
    for principal in [
        auth_pb2.Principal(id="42"),
        user("01"),
        user("١٢"),
        user("42", session_id="-3"),
        user("42", group_ids=["ops team"]),
        auth_pb2.Principal(kind=auth_pb2.PRINCIPAL_KIND_SERVICE, id="Bad Name"),
    ]:
        error = await rejection(auth.issue(principal))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, principal


async def test_issue_token_refuses_a_negative_ttl(auth: Running) -> None:
    """A negative ttl is INVALID_ARGUMENT; a huge one is capped at max_ttl."""
    error = await rejection(auth.issue(user(), ttl=-1))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    capped = await auth.authenticate(await auth.issue(user(), ttl=10**9))
    assert capped.expires_at - time.time() <= 86400 + 1


async def test_refresh_extends_the_same_session(auth: Running) -> None:
    """RefreshToken returns a new token of the same session with a later expiry."""
    old = await auth.issue(user("42", session_id="99"), ttl=60)
    response = await auth.stub.RefreshToken(auth_pb2.RefreshTokenRequest(token=old))
    before, after = await auth.authenticate(old), await auth.authenticate(response.token)
    assert response.token != old
    assert after.session_id == before.session_id == "99"
    assert after.expires_at > before.expires_at
    assert after.token_id != before.token_id


async def test_revoked_token_cannot_refresh(auth: Running) -> None:
    """A revoked token is refused by Authenticate and by RefreshToken."""
    token = await auth.issue(user())
    await auth.stub.RevokeToken(auth_pb2.RevokeTokenRequest(token=token))
    for call in (
        auth.stub.Authenticate(auth_pb2.AuthenticateRequest(token=token)),
        auth.stub.RefreshToken(auth_pb2.RefreshTokenRequest(token=token)),
    ):
        error = await rejection(call)
        assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, "revoked")


async def test_revoke_one_token_leaves_the_others(auth: Running) -> None:
    """RevokeToken revokes that jti only, with an expiry matching the token's life."""
    first, second = await auth.issue(user(), ttl=300), await auth.issue(user(), ttl=300)
    await auth.stub.RevokeToken(auth_pb2.RevokeTokenRequest(token=first))
    assert (await rejection(auth.authenticate(first))).details() == "revoked"
    assert (await auth.authenticate(second)).id == "42"
    client = aioredis.Redis.from_url(auth.server.settings.redis_url)
    jti = (await auth.authenticate(second)).token_id
    assert await client.ttl(rkeys.revoked_token(jti)) == -2  # second not marked
    first_jti = hs_claims(first)["jti"]
    assert 300 <= await client.ttl(rkeys.revoked_token(first_jti)) <= 311
    await client.aclose()


def hs_claims(token: str) -> dict[str, object]:
    return jwt.decode(token, options={"verify_signature": False})


async def test_revoke_token_rejects_forgeries_and_accepts_expired(auth: Running) -> None:
    """RevokeToken needs a genuine token; an expired one needs no revocation (OK)."""
    error = await rejection(auth.stub.RevokeToken(auth_pb2.RevokeTokenRequest(token="garbage")))
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, "malformed")
    expired = hs256(claims(exp=int(time.time()) - 60, iat=int(time.time()) - 600))
    await auth.stub.RevokeToken(auth_pb2.RevokeTokenRequest(token=expired))


async def test_revoke_all_rejects_older_and_accepts_newer(auth: Running) -> None:
    """RevokeAll revokes every token of that user issued so far, not later ones or others'."""
    old = await auth.issue(user("42"))
    other = await auth.issue(user("43"))
    external = hs256(claims(sub="42"))
    request = auth_pb2.RevokeAllRequest(kind=auth_pb2.PRINCIPAL_KIND_USER, id="42")
    denied = await rejection(auth.stub.RevokeAll(request))
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    await auth.stub.RevokeAll(request, metadata=ADMIN)
    for token in (old, external):
        assert (await rejection(auth.authenticate(token))).details() == "revoked"
    assert (await auth.authenticate(other)).id == "43"
    newer = await auth.issue(user("42"))
    assert (await auth.authenticate(newer)).id == "42"


async def test_revoke_all_validates_its_target(auth: Running) -> None:
    """RevokeAll with no kind or a non-canonical id is INVALID_ARGUMENT."""
    for kind, pid in [
        (auth_pb2.PRINCIPAL_KIND_UNSPECIFIED, "1"),
        (auth_pb2.PRINCIPAL_KIND_USER, "01"),
    ]:
        error = await rejection(
            auth.stub.RevokeAll(auth_pb2.RevokeAllRequest(kind=kind, id=pid), metadata=ADMIN)
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_api_key_exchange(auth: Running) -> None:
    """An agent API key created by the admin obtains tokens for that agent until revoked."""
    agent = auth_pb2.Principal(
        kind=auth_pb2.PRINCIPAL_KIND_AGENT, id="1001", group_ids=["3"], roles=["agent"]
    )
    denied = await rejection(auth.stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(principal=agent)))
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    created = await auth.stub.CreateApiKey(
        auth_pb2.CreateApiKeyRequest(principal=agent), metadata=ADMIN
    )
    assert len(created.key_id) == 64
    assert created.key_id not in created.api_key

    issued = await auth.stub.IssueToken(
        auth_pb2.IssueTokenRequest(api_key=created.api_key, ttl_seconds=60)
    )
    principal = await auth.authenticate(issued.token)
    assert principal.kind == auth_pb2.PRINCIPAL_KIND_AGENT
    assert (principal.id, list(principal.group_ids), list(principal.roles)) == (
        "1001",
        ["3"],
        ["agent"],
    )

    await auth.stub.RevokeApiKey(
        auth_pb2.RevokeApiKeyRequest(key_id=created.key_id), metadata=ADMIN
    )
    error = await rejection(
        auth.stub.IssueToken(auth_pb2.IssueTokenRequest(api_key=created.api_key))
    )
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, "unknown_key")
    missing = await rejection(
        auth.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(key_id=created.key_id), metadata=ADMIN)
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_api_keys_are_for_agents_only(auth: Running) -> None:
    """CreateApiKey for a user is INVALID_ARGUMENT; an unknown key is unknown_key."""
    error = await rejection(
        auth.stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(principal=user()), metadata=ADMIN)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    unknown = await rejection(
        auth.stub.IssueToken(auth_pb2.IssueTokenRequest(api_key="rgk_not-a-real-key"))
    )
    assert (unknown.code(), unknown.details()) == (grpc.StatusCode.UNAUTHENTICATED, "unknown_key")


async def wait_for_status(service: Running, name: str, status: int) -> None:
    health = health_pb2_grpc.HealthStub(service.channel)
    request = health_pb2.HealthCheckRequest(service=name)
    for _ in range(100):
        if (await health.Check(request)).status == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"health of {name!r} never became {status}")


async def test_redis_down_is_unavailable(own_redis: RedisProcess, keys: Keys) -> None:
    """When Redis is unreachable, Authenticate and the revocations answer UNAVAILABLE."""
    async with running(settings_for(own_redis.url, keys, redis_check_interval=0)) as service:
        token = hs256(claims())
        assert (await service.authenticate(token)).id == "42"
        own_redis.stop()
        for call in (
            service.stub.Authenticate(auth_pb2.AuthenticateRequest(token=token)),
            service.stub.RevokeToken(auth_pb2.RevokeTokenRequest(token=token)),
            service.stub.RevokeAll(
                auth_pb2.RevokeAllRequest(kind=auth_pb2.PRINCIPAL_KIND_USER, id="42"),
                metadata=ADMIN,
            ),
        ):
            error = await rejection(call)
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert token not in error.details()
        # A forged token is still refused without Redis.
        forged = await rejection(service.authenticate("garbage"))
        assert forged.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_health_follows_redis(own_redis: RedisProcess, keys: Keys) -> None:
    """AuthService health is NOT_SERVING while Redis is down, SERVING when back; "" stays up."""
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    async with running(settings_for(own_redis.url, keys, redis_check_interval=0.1)) as service:
        await wait_for_status(service, SERVICE_NAME, serving)
        own_redis.stop()
        await wait_for_status(service, SERVICE_NAME, not_serving)
        await wait_for_status(service, "", serving)
        own_redis.start()
        await wait_for_status(service, SERVICE_NAME, serving)
        assert (await service.authenticate(hs256(claims()))).id == "42"


async def test_health_serving_then_not_serving_on_graceful_stop(redis_url: str, keys: Keys) -> None:
    """Health says SERVING once started and NOT_SERVING as soon as the stop begins."""
    async with running(settings_for(redis_url, keys, shutdown_grace=2.0)) as service:
        health = health_pb2_grpc.HealthStub(service.channel)
        for name in ("", SERVICE_NAME):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.create_task(service.server.stop())
        second = await asyncio.wait_for(watch.read(), 5)
        assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        await stopping


async def test_reflection_lists_the_service(auth: Running) -> None:
    """Server reflection names roomgate.auth.v1.AuthService and health."""
    stub = reflection_pb2_grpc.ServerReflectionStub(auth.channel)
    call = stub.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    reply = await call.read()
    await call.done_writing()
    names = {s.name for s in reply.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names
    assert SERVICE_NAME == "roomgate.auth.v1.AuthService"


async def test_metrics_endpoint_counts_authentications(redis_url: str, keys: Keys) -> None:
    """/metrics answers with the authentication counters by outcome and reason."""
    async with running(settings_for(redis_url, keys, metrics_listen="127.0.0.1:0")) as auth:
        await check_metrics(auth)


async def check_metrics(auth: Running) -> None:
    await auth.authenticate(hs256(claims()))
    await rejection(auth.authenticate("garbage"))
    url = f"http://127.0.0.1:{auth.server.metrics_port}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert 'roomgate_auth_authentications_total{outcome="ok",reason=""} 1.0' in body
    assert 'roomgate_auth_authentications_total{outcome="rejected",reason="malformed"} 1.0' in body
    assert "roomgate_auth_authenticate_seconds_bucket" in body
    assert 'roomgate_auth_grpc_requests_total{code="UNAUTHENTICATED",method="Authenticate"}' in body


async def test_tokens_never_reach_the_logs(
    auth: Running, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """No log record of any RPC, accepted or refused, contains a token or an API key."""
    caplog.set_level(logging.DEBUG)
    tokens = [hs256(claims()), signed(keys.rsa1, claims()), hs256(claims(aud="x"))]
    tokens.append(await auth.issue(user()))
    refreshed = await auth.stub.RefreshToken(auth_pb2.RefreshTokenRequest(token=tokens[-1]))
    tokens.append(refreshed.token)
    outcomes = await asyncio.gather(
        *(auth.authenticate(token) for token in tokens), return_exceptions=True
    )
    details = [o.details() or "" for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert details == ["wrong_audience"]
    await auth.stub.RevokeToken(auth_pb2.RevokeTokenRequest(token=tokens[0]))
    await rejection(auth.authenticate(tokens[0]))
    agent = auth_pb2.Principal(kind=auth_pb2.PRINCIPAL_KIND_AGENT, id="7")
    created = await auth.stub.CreateApiKey(
        auth_pb2.CreateApiKeyRequest(principal=agent), metadata=ADMIN
    )
    await auth.stub.IssueToken(auth_pb2.IssueTokenRequest(api_key=created.api_key))
    await rejection(auth.stub.IssueToken(auth_pb2.IssueTokenRequest(api_key="rgk_secret-guess")))
    assert caplog.records, "the service logs something"
    secrets = [*tokens, created.api_key, "rgk_secret-guess"]
    for record in caplog.records:
        text = f"{record.getMessage()} {record.__dict__!r}"
        for secret in secrets:
            for part in secret.split("."):
                assert part not in text, record
