"""The roomauthz service's exceptions: one base, ``RoomAuthzError``.

    RoomgateError (roomgate_common.errors)
    └── RoomAuthzError           base of this package
        └── PolicyError          a policy document is invalid (also a ``ValueError``); the
                                 message names the offending entry; at start it becomes
                                 ``ConfigurationError`` (``policy_file.load_policy``)

A decision is never an exception (``policy.Decision`` says allowed or the reason). Redis
failures are ``roomgate_common.errors.BusUnavailable`` / ``BusBusy`` (gRPC UNAVAILABLE /
RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

from roomgate_common.errors import RoomgateError


class RoomAuthzError(RoomgateError):
    """Base of every roomauthz exception."""


class PolicyError(RoomAuthzError, ValueError):
    """A policy document (file) is invalid; the message names the offending entry."""
