"""Acknowledged delivery, without I/O: the ``requiresAck`` messages a connection sent and
the client has not acknowledged yet, with their resend deadlines (docs/protocol.md, "Acks").

A message is resent ``ack_timeout`` seconds after each send, at most ``ack_retries`` times;
after that this connection gives up on it (a user's mailbox still holds it for the next
connection). The clock is passed in; the connection arms one timer, at ``next_deadline``.

Every deadline is "now + timeout", so the entries, kept in insertion order and moved to the
end when resent, are always in deadline order: the next deadline is the first entry's, and
``due`` looks at no entry that is not due.
"""

from __future__ import annotations

from typing import Generic, TypeVar

M = TypeVar("M")


class _Entry(Generic[M]):
    __slots__ = ("deadline", "message", "resends")

    def __init__(self, message: M, deadline: float) -> None:
        self.message = message
        self.resends = 0
        self.deadline = deadline


class AckTracker(Generic[M]):
    __slots__ = ("_entries", "retries", "timeout")

    def __init__(self, timeout: float, retries: int) -> None:
        self.timeout = timeout
        self.retries = retries
        self._entries: dict[str, _Entry[M]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def track(self, ack_id: str, message: M, now: float) -> bool:
        """``message`` was just sent and waits for ``ack_id``; False when it already did."""
        if ack_id in self._entries:
            return False
        self._entries[ack_id] = _Entry(message, now + self.timeout)
        return True

    def acked(self, ack_id: str) -> bool:
        """Stop waiting for ``ack_id``; False when nothing waited for it."""
        return self._entries.pop(ack_id, None) is not None

    def next_deadline(self) -> float | None:
        for entry in self._entries.values():
            return entry.deadline
        return None

    def due(self, now: float) -> tuple[list[M], int]:
        """What to resend at ``now`` (each counted as one more resend, due again a timeout
        later) and how many were given up (resent ``retries`` times already)."""
        resend: list[M] = []
        given_up = 0
        entries = self._entries
        while entries:
            ack_id, entry = next(iter(entries.items()))
            if entry.deadline > now:
                break
            del entries[ack_id]
            if entry.resends >= self.retries:
                given_up += 1
                continue
            entry.resends += 1
            entry.deadline = now + self.timeout
            entries[ack_id] = entry  # to the end: still in deadline order
            resend.append(entry.message)
        return resend, given_up

    def clear(self) -> None:
        self._entries.clear()
