"""Issue 11, finding 8 (and 15 for escalation): every EscalationService call needs a service
token with the `escalation` permission, verified by the auth service; the timeline's `by` of a
trigger is the verified caller; deep metric_json is INVALID_ARGUMENT, not UNKNOWN."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from roomgate.auth.v1 import auth_pb2, auth_pb2_grpc
from roomgate.escalation.v1 import escalation_pb2 as pb
from roomgate.escalation.v1 import escalation_pb2_grpc as pb_grpc
from roomgate_auth.server import AuthServer
from roomgate_auth.settings import AuthSettings
from roomgate_common.errors import ConfigurationError
from roomgate_common.identity import Principal, PrincipalKind
from roomgate_escalation.policy import PolicyConfig
from roomgate_escalation.server import EscalationReplica
from roomgate_escalation.settings import EscalationSettings

from tests.escalation.conftest import GATEWAY_KEY, caller_token
from tests.escalation.conftest import escalation_auth as _auth_fixture
from tests.security.edge import grpc_channel

escalation_auth = _auth_fixture


@pytest.fixture
async def replica(redis_url: str, escalation_auth: AuthServer) -> AsyncIterator[EscalationReplica]:
    settings = EscalationSettings.from_env(
        redis_url=redis_url,
        auth_addr=f"127.0.0.1:{escalation_auth.port}",
        escalation_listen="127.0.0.1:0",
        shutdown_grace=1.0,
    )
    replica = EscalationReplica(settings, config=PolicyConfig())
    await replica.start()
    yield replica
    await replica.stop()


def _calls(stub: pb_grpc.EscalationServiceStub, metadata: Any) -> list[Any]:
    return [
        stub.Trigger(
            pb.TriggerRequest(alert_id="a1", severity="info", title="t"), metadata=metadata
        ),
        stub.Acknowledge(pb.AcknowledgeRequest(alert_id="a1", by="42"), metadata=metadata),
        stub.Resolve(pb.ResolveRequest(alert_id="a1", by="42"), metadata=metadata),
        stub.Get(pb.GetRequest(alert_id="a1"), metadata=metadata),
        stub.ListActive(pb.ListActiveRequest(), metadata=metadata),
    ]


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def test_calls_without_a_valid_service_token_are_refused(
    replica: EscalationReplica, escalation_auth: AuthServer
) -> None:
    """No/forged token: UNAUTHENTICATED; a user, or a service without the permission:
    PERMISSION_DENIED; nothing changes; health stays open for probes."""
    user, _ = escalation_auth.policy.mint(Principal(kind=PrincipalKind.USER, id="42"))
    cases = [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        (_bearer("not-a-token"), grpc.StatusCode.UNAUTHENTICATED),
        (_bearer(user), grpc.StatusCode.PERMISSION_DENIED),
        (
            _bearer(caller_token(escalation_auth, perms=("publish",))),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
    ]
    async with grpc_channel(replica.port) as channel:
        stub = pb_grpc.EscalationServiceStub(channel)
        for metadata, code in cases:
            for call in _calls(stub, metadata):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call
                assert refused.value.code() == code, (metadata[:1], refused.value.details())
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        created = await stub.Trigger(
            pb.TriggerRequest(alert_id="a2", severity="info", title="t"),
            metadata=_bearer(caller_token(escalation_auth, "alert-manager")),
        )
        assert created.created
        got = await stub.Get(
            pb.GetRequest(alert_id="a2"), metadata=_bearer(caller_token(escalation_auth))
        )
        assert got.alert.timeline[0].by == "alert-manager"  # the verified caller, not a header


async def test_deep_metric_json_is_invalid_argument(
    replica: EscalationReplica, escalation_auth: AuthServer
) -> None:
    """Trigger with 5000-deep metric_json answers INVALID_ARGUMENT json_too_deep."""
    async with grpc_channel(replica.port) as channel:
        stub = pb_grpc.EscalationServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Trigger(
                pb.TriggerRequest(
                    alert_id="a3", severity="info", title="t", metric_json="[" * 5000 + "]" * 5000
                ),
                metadata=_bearer(caller_token(escalation_auth)),
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("json_too_deep")


@pytest.mark.parametrize(
    "value", ["gateway:escalation=abc", "gateway escalation=" + "0" * 64, "=" + "0" * 64]
)
def test_malformed_service_keys_are_refused(value: str) -> None:
    """ROOMGATE_SERVICE_KEYS entries must be <id>:<perms>=<sha256 hex>; the error names it."""
    settings = AuthSettings.from_env(
        jwt_issuer="i", jwt_audience="a", jwt_hs256_secret="s" * 40, service_keys=value
    )
    with pytest.raises(ConfigurationError, match="ROOMGATE_SERVICE_KEYS"):
        settings.service_principals()


async def test_service_api_key_exchanges_for_a_service_token(
    escalation_auth: AuthServer,
) -> None:
    """A configured service key gets a token of that service with its permissions (and a fresh
    session each time); an unknown key is UNAUTHENTICATED."""
    async with grpc_channel(escalation_auth.port) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        issued = await stub.IssueToken(auth_pb2.IssueTokenRequest(api_key=GATEWAY_KEY))
        assert issued.principal.kind == auth_pb2.PRINCIPAL_KIND_SERVICE
        assert (issued.principal.id, list(issued.principal.permissions)) == (
            "gateway",
            ["escalation"],
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.IssueToken(auth_pb2.IssueTokenRequest(api_key=GATEWAY_KEY + "x"))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
