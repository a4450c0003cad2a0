"""How many connections may be in their handshake at once on this gateway (pure).

A handshake runs from the WebSocket accept (or the SSE stream's start) to the ``welcome``:
the token's verification, the cluster-wide counts, the personal rooms, the mailbox. In a
reconnect storm thousands arrive together; taken all at once they fill the event loop's
ready queue, every connection waits on every other, the gateway's own probes (``/readyz``,
``/healthz``) take seconds, and a load balancer or Kubernetes takes the gateway out of
service — which makes the storm worse. So at most ``MAX_PENDING_CONNECTS`` handshakes run
at once; a connection beyond that is closed 1013 (try again later) right after the accept,
which costs the gateway almost nothing and tells the client to come back with backoff
(docs/protocol.md, "Connecting").
"""

from __future__ import annotations


class Handshakes:
    __slots__ = ("count", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("at least one handshake at a time")
        self.limit = limit
        self.count = 0

    def enter(self) -> bool:
        """Start one handshake; False (nothing counted) when ``limit`` are under way."""
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def leave(self) -> None:
        """One handshake ended (welcomed, refused or gone)."""
        if self.count > 0:
            self.count -= 1
