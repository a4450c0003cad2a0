"""The per-connection outbound queue: bounded, ordered by priority, pure (no I/O).

Fan-out pushes and never waits; the connection's writer pops. On overflow the oldest
``low`` message goes first, then the oldest ``normal``; when only ``high`` traffic is
queued and more arrives, the client is a slow consumer (the caller closes it with 1013).
Messages whose ``ttl`` has passed are dropped when popped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from roomgate_gateway.errors import GatewayError

Priority = Literal["high", "normal", "low"]


class SlowConsumer(GatewayError):
    """The queue is full of ``high`` messages and another one arrived."""


@dataclass(slots=True)
class Outgoing:
    """One serialised message; the same object goes to every member of its room."""

    frame: str
    priority: Priority
    expires_at: float | None = None  # monotonic seconds; None = never
    room: str | None = None
    offset: int = 0
    # The envelope id when the message needs an ack from the client (acked delivery hook).
    ack_id: str | None = None
    # The `compressed` frame, made once on first need and shared by every recipient.
    compressed: str | None = None
    # The WebSocket frames (header + UTF-8) of `frame` and of `compressed`, made once on
    # first need when connections take frames directly (wsprotocol).
    wire: bytes | None = None
    wire_compressed: bytes | None = None
    epoch: str = ""
    # Seconds since the envelope's timestamp when the gateway read it (delivery latency).
    age: float = 0.0
    # W3C trace context of the publish, for the per-message "deliver" span.
    trace: dict[str, str] | None = None
    # Room events this frame carries (a replay's `batch` frame carries several).
    count: int = 1


class OutboundQueue:
    __slots__ = ("_high", "_low", "_normal", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._high: deque[Outgoing] = deque()
        self._normal: deque[Outgoing] = deque()
        self._low: deque[Outgoing] = deque()

    def __len__(self) -> int:
        return len(self._high) + len(self._normal) + len(self._low)

    def push(self, item: Outgoing) -> Outgoing | None:
        """Queue ``item``; returns the message dropped to make room (maybe ``item`` itself).

        Raises ``SlowConsumer`` when a ``high`` message finds the queue full of ``high``.
        """
        dropped: Outgoing | None = None
        if len(self) >= self.maxsize:
            if self._low:
                dropped = self._low.popleft()
            elif item.priority == "low":
                return item
            elif self._normal:
                dropped = self._normal.popleft()
            elif item.priority == "normal":
                return item
            else:
                raise SlowConsumer
        self._lane(item.priority).append(item)
        return dropped

    def pop_many(self, limit: int, now: float) -> tuple[list[Outgoing], int]:
        """Up to ``limit`` live messages, highest priority first; and how many expired."""
        out: list[Outgoing] = []
        expired = 0
        for lane in (self._high, self._normal, self._low):
            while lane and len(out) < limit:
                item = lane.popleft()
                if item.expires_at is not None and item.expires_at <= now:
                    expired += 1
                    continue
                out.append(item)
        return out, expired

    def drain(self) -> list[Outgoing]:
        """Everything still queued (on close), highest priority first."""
        items = [*self._high, *self._normal, *self._low]
        self._high.clear()
        self._normal.clear()
        self._low.clear()
        return items

    def _lane(self, priority: Priority) -> deque[Outgoing]:
        return (
            self._high if priority == "high" else self._low if priority == "low" else self._normal
        )
