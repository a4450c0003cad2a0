"""The gateway's own service credential: an API key (``ROOMGATE_ESCALATION_API_KEY``) that the
auth service exchanges for a short-lived token of the gateway's service principal
(``IssueToken`` with ``api_key``; auth knows only the key's digest, ``ROOMGATE_SERVICE_KEYS``).
The token is kept until 80 % of its lifetime has passed and then exchanged again, so the
gateway calls auth about once per token lifetime, and one exchange serves every concurrent
caller."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
from roomgate.auth.v1 import auth_pb2, auth_pb2_grpc

from roomgate_gateway.clients import PeerUnavailable

RENEW_AT = 0.8


class ServiceToken:
    """``await get()`` -> a valid service token (``PeerUnavailable`` when auth refuses or is
    unreachable)."""

    def __init__(
        self,
        auth_addr: str,
        api_key: str,
        *,
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._channel = grpc.aio.insecure_channel(auth_addr)
        self._stub = auth_pb2_grpc.AuthServiceStub(self._channel)
        self._api_key = api_key
        self._timeout = timeout
        self._clock = clock
        self._token = ""
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        if self._token and self._clock() < self._renew_at:
            return self._token
        async with self._lock:
            if not self._token or self._clock() >= self._renew_at:
                await self._exchange()
        return self._token

    async def _exchange(self) -> None:
        now = self._clock()
        try:
            reply = await self._stub.IssueToken(
                auth_pb2.IssueTokenRequest(api_key=self._api_key), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise PeerUnavailable(f"service token: {exc.code().name}") from None
        self._token = reply.token
        self._renew_at = now + RENEW_AT * max(0.0, reply.principal.expires_at - now)

    async def close(self) -> None:
        await self._channel.close(grace=None)
