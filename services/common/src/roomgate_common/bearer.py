"""The one parser of ``Authorization: Bearer <token>`` (HTTP headers, SSE, gRPC metadata).

RFC 7235 §2.1: the scheme name is case-insensitive; RFC 6750 §2.1: one or more spaces
separate it from the token. Anything else (another scheme, no token) is no token. Pure.
"""

from __future__ import annotations


def bearer_token(value: str | None) -> str:
    """The token of an ``Authorization`` value ('' when it carries no Bearer token)."""
    if not value or len(value) < 7 or value[:6].lower() != "bearer" or value[6] != " ":
        return ""
    return value[7:].strip(" ")
