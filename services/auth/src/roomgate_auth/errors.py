"""Exceptions of the auth service and the one table of rejection reasons.

    RoomgateError                       (roomgate_common.errors)
    └── AuthServiceError                base of this package
        ├── AuthError                   a token or credential is rejected; ``.reason`` is a Reason
        ├── InvalidRequest              an issuing request names an invalid principal or ttl
        └── CannotIssue                 this instance has no signing key (verification only)

The reasons are also listed in the comment at the top of protos/roomgate/auth/v1/auth.proto
(a test keeps both lists equal); they travel as the status message of UNAUTHENTICATED.
"""

from __future__ import annotations

from enum import StrEnum

from roomgate_common.errors import RoomgateError


class Reason(StrEnum):
    """Why a token was rejected: one machine-readable word."""

    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    BAD_SIGNATURE = "bad_signature"
    REVOKED = "revoked"
    MALFORMED = "malformed"
    WRONG_AUDIENCE = "wrong_audience"
    WRONG_ISSUER = "wrong_issuer"
    UNKNOWN_KEY = "unknown_key"
    ALGORITHM_NOT_ALLOWED = "algorithm_not_allowed"
    MISSING_CLAIM = "missing_claim"
    INVALID_CLAIM = "invalid_claim"


class AuthServiceError(RoomgateError):
    """Base of every auth service exception."""


class AuthError(AuthServiceError):
    """A token (or API key) is rejected. ``str(exc)`` is the reason and nothing else, so the
    token itself can never leak through an error message."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.value)
        self.reason = reason


class InvalidRequest(AuthServiceError):
    """A principal or a lifetime given to the issuing side is not acceptable."""


class CannotIssue(AuthServiceError):
    """No signing key is configured: this instance only verifies tokens."""
