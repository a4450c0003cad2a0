"""Issue 11, finding 9: an API key never lets its agent choose the session id."""

from __future__ import annotations

from roomgate.auth.v1 import auth_pb2, auth_pb2_grpc

from tests.gateway.conftest import ADMIN, services
from tests.security.edge import grpc_channel


async def test_api_key_token_gets_a_fresh_session_id(redis_url: str) -> None:
    """IssueToken with an API key ignores a requested session id and mints a new one each time."""
    async with services(redis_url) as (auth, _authz), grpc_channel(auth.port) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        agent = auth_pb2.Principal(kind=auth_pb2.PRINCIPAL_KIND_AGENT, id="1001")
        created = await stub.CreateApiKey(
            auth_pb2.CreateApiKeyRequest(principal=agent),
            metadata=(("authorization", f"Bearer {ADMIN}"),),
        )
        wanted = auth_pb2.Principal(kind=auth_pb2.PRINCIPAL_KIND_AGENT, id="1001", session_id="7")
        sessions = set()
        for _ in range(3):
            issued = await stub.IssueToken(
                auth_pb2.IssueTokenRequest(api_key=created.api_key, principal=wanted)
            )
            sessions.add(issued.principal.session_id)
        assert "7" not in sessions
        assert len(sessions) == 3
        assert all(s.isdigit() for s in sessions)
