"""Request bodies read against a limit: refused on ``Content-Length`` before a byte is read,
otherwise streamed with a running count (chunked bodies), so an oversized upload never costs
more than the limit plus one chunk of memory."""

from __future__ import annotations

from starlette.requests import Request

from roomgate_gateway.errors import GatewayError


class BodyTooLarge(GatewayError):
    """The body is (or says it is) longer than the limit."""


class BadLength(GatewayError):
    """``Content-Length`` is not a decimal number."""


def declared_length(request: Request) -> int | None:
    """The ``Content-Length`` the client declared (None for chunked bodies)."""
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit() or len(value) > 19:
        raise BadLength(value[:32])
    return int(value)


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, or ``BodyTooLarge`` as soon as it is known to exceed ``limit``."""
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)
