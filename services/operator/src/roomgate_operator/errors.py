"""The operator's exceptions (the pure policy errors live in ``roomgate_operator.policy``).

    RoomgateError (roomgate_common.errors)
    └── OperatorError            an API call failed in a way retrying will not fix
        ├── KubeUnavailable      the API server is unreachable, overloaded or lost a race
        └── NotFound             the object does not exist (e.g. the target Deployment)

Redis failures are ``roomgate_common.errors.BusUnavailable`` (Redis down) or ``BusBusy`` (this
process's pool had no free connection in time). Handlers turn ``KubeUnavailable`` and both
of those into ``kopf.TemporaryError``.
"""

from __future__ import annotations

from roomgate_common.errors import RoomgateError


class OperatorError(RoomgateError):
    """An operator call failed."""


class KubeUnavailable(OperatorError):
    """The Kubernetes API is not answering right now (transient)."""


class NotFound(OperatorError):
    """A Kubernetes object the operator needs does not exist."""
