"""The operator's exceptions: one base, ``OperatorError``.

    RoomgateError (roomgate_common.errors)
    └── OperatorError            base of this package
        ├── KubeUnavailable      the API server is unreachable, overloaded or lost a race
        ├── NotFound             the object does not exist (e.g. the target Deployment)
        └── PolicyError          a GatewayPolicy cannot be used (``roomgate_operator.policy``)
            └── InvalidPolicy    a semantic error: the operator reports Degraded, never retries

Redis failures are ``roomgate_common.errors.BusUnavailable`` (Redis down) or ``BusBusy`` (this
process's pool had no free connection in time). Handlers turn ``KubeUnavailable`` and both
of those into ``kopf.TemporaryError``; ``InvalidPolicy`` and ``NotFound`` of the target into
a Degraded condition.
"""

from __future__ import annotations

from roomgate_common.errors import RoomgateError


class OperatorError(RoomgateError):
    """Base of every operator exception."""


class KubeUnavailable(OperatorError):
    """The Kubernetes API is not answering right now (transient)."""


class NotFound(OperatorError):
    """A Kubernetes object the operator needs does not exist."""


class PolicyError(OperatorError):
    """Base of the operator's policy errors."""


class InvalidPolicy(PolicyError):
    """The policy cannot be applied as written; ``reason`` is a CamelCase condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
