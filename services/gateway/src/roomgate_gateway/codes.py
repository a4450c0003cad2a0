"""Close codes and error codes: the one table (docs/protocol.md mirrors it; a test checks).

Internal failures close with 1011 and never send exception text to the peer.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class CloseCode(IntEnum):
    """WebSocket close codes the gateway sends."""

    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4001
    HEARTBEAT_TIMEOUT = 4008
    CONNECTION_LIMIT = 4029
    RATE_LIMITED = 4030


# Reason strings sent with each close code (short, no secrets, ≤ 123 bytes). A slow
# consumer is closed TRY_AGAIN_LATER with the reason SLOW_CONSUMER_REASON (a gateway in
# a connect storm: BUSY_REASON), a revoked
# session UNAUTHORIZED with REVOKED_REASON.
CLOSE_REASONS: dict[CloseCode, str] = {
    CloseCode.MESSAGE_TOO_BIG: "Message too big",
    CloseCode.INTERNAL_ERROR: "Internal error",
    CloseCode.SERVICE_RESTART: "Service restart",
    CloseCode.TRY_AGAIN_LATER: "Try again later",
    CloseCode.UNAUTHORIZED: "Unauthorized",
    CloseCode.HEARTBEAT_TIMEOUT: "Heartbeat timeout",
    CloseCode.CONNECTION_LIMIT: "Too many connections",
    CloseCode.RATE_LIMITED: "Rate limit exceeded",
}


SLOW_CONSUMER_REASON = "Slow consumer"
# A connection beyond MAX_PENDING_CONNECTS handshakes under way is closed TRY_AGAIN_LATER
# with this reason, right after the accept (handshakes.py).
BUSY_REASON = "Gateway busy"
# A live session whose token was revoked (RevokeToken, RevokeAll) is closed UNAUTHORIZED
# with this reason.
REVOKED_REASON = "revoked"


class ErrorCode(StrEnum):
    """``data.code`` of an ``error`` message. The connection stays open after each of them."""

    MALFORMED_JSON = "malformed_json"
    JSON_TOO_DEEP = "json_too_deep"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    NOT_AUTHENTICATED = "not_authenticated"
    UNAUTHORIZED = "unauthorized"
    CONNECTION_LIMIT = "connection_limit"
    ALREADY_AUTHENTICATED = "already_authenticated"
    PERMISSION_DENIED = "permission_denied"
    PUBLISH_NOT_ALLOWED = "publish_not_allowed"
    INVALID_ROOM = "invalid_room"
    NOT_SUBSCRIBED = "not_subscribed"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    GATEWAY_ROOM_LIMIT = "gateway_room_limit"
    RATE_LIMITED = "rate_limited"
    COMPRESSION_ERROR = "compression_error"
    INFLATED_TOO_LARGE = "inflated_too_large"
    BATCH_TOO_LARGE = "batch_too_large"
    NESTING_NOT_ALLOWED = "nesting_not_allowed"
    REFRESH_FAILED = "refresh_failed"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
