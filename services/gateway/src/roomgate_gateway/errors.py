"""The gateway's exceptions: one base, every one of them below it.

    RoomgateError                   (roomgate_common.errors)
    └── GatewayError                base of this package
        ├── AuthRejected            the auth service refused the token (``reason``)   clients.py
        ├── PeerUnavailable         auth/roomauthz/escalation unreachable, or the
        │                           breaker is open                                  clients.py
        ├── AlertCommandRefused     escalation refused an alert command              clients.py
        ├── ProtocolError           a client message is invalid (its error code)     protocol.py
        ├── InvalidTransition       a connection state change the machine forbids    state.py
        ├── SlowConsumer            a client's outbound queue is over its bound      outbound.py
        ├── BodyTooLarge            an HTTP body beyond its bound                    bodies.py
        ├── BadLength               an HTTP Content-Length that is not a number      bodies.py
        ├── PublishError            a publish API request refused (status, code)     publishing.py
        └── FallbackError           an SSE fallback request refused                  fallback.py
            └── SessionClosed       the fallback session is gone                     fallback.py

Each is defined next to the code that raises it; this module holds the base and the tree.
Redis errors reach the gateway only as ``BusUnavailable`` / ``BusBusy`` (roomgate_common,
raised by the Redis seam ``store.py`` and ``bus.py``).
"""

from __future__ import annotations

from roomgate_common.errors import RoomgateError


class GatewayError(RoomgateError):
    """Base of the gateway's exceptions (the tree is in this module's docstring)."""
