"""Exceptions of the escalation service: one base, ``EscalationError``.

    RoomgateError (roomgate_common.errors)
    └── EscalationError
        ├── InvalidAlert        bad input; ``reason`` is machine-readable (INVALID_ARGUMENT)
        ├── AlertNotFound       no alert with this id (NOT_FOUND)
        ├── AlertClosed         the alert id names a resolved alert (ALREADY_EXISTS)
        ├── TooManyAlerts       the active alert cap is reached (RESOURCE_EXHAUSTED)
        └── callers._Refused    a caller's service token is refused (aborts the call with
                                its own code; private to the interceptor)

``BusUnavailable`` (roomgate_common.errors) means Redis is down (UNAVAILABLE).
"""

from __future__ import annotations

from roomgate_common.errors import RoomgateError


class EscalationError(RoomgateError):
    """Base of the escalation service's exceptions."""


class InvalidAlert(EscalationError):
    """Bad input. ``reason`` is one short machine-readable word, ``detail`` says what."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class AlertNotFound(EscalationError):
    """No alert with this id (never existed, or resolved and past retention)."""


class AlertClosed(EscalationError):
    """A trigger names an alert id that is already resolved."""


class TooManyAlerts(EscalationError):
    """The number of active alerts reached the configured cap."""
