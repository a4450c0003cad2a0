"""The per-connection inbound budget (pure; the clock is passed in).

Every message a client sends costs budget: pings, acks, the ``batch`` and ``compressed``
wrappers and each message inside them — nothing is exempt. The budget is a token bucket of
``burst`` messages refilled at ``rate`` per second; a ``ping`` costs ``ping_cost`` of a
message (pings are cheap and legitimate clients send few: the budget is generous to them).

- Within budget: the message is handled (``Verdict.ALLOW``).
- Over budget: the message is dropped. At most one drop a second is
  ``Verdict.REFUSE_FIRST`` (the caller answers ``rate_limited``), the others
  ``Verdict.REFUSE`` (silent: a flood must not be answered message for message).
- Dropped messages still cost: a client that keeps sending ``burst`` more than its budget
  allows is closed (``Verdict.CLOSE``, 4030).

``tick`` tells the read loop when to yield to the event loop (every ``yield_every``
messages), so that one client's queued frames never hold the loop for the others.
"""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    ALLOW = "allow"
    REFUSE_FIRST = "refuse_first"
    REFUSE = "refuse"
    CLOSE = "close"


class InboundBudgetPolicy:
    """The numbers, shared by every connection of a gateway."""

    __slots__ = ("burst", "ping_cost", "rate", "yield_every")

    def __init__(self, *, rate: float, burst: float, ping_cost: float, yield_every: int) -> None:
        if rate <= 0 or burst < 1 or not 0 < ping_cost <= 1 or yield_every < 1:
            raise ValueError("inbound budget: rate > 0, burst >= 1, 0 < ping_cost <= 1")
        self.rate = rate
        self.burst = burst
        self.ping_cost = ping_cost
        self.yield_every = yield_every


class InboundBudget:
    """One connection's budget: four numbers."""

    __slots__ = ("_count", "_stamp", "_tokens", "_warned")

    def __init__(self, policy: InboundBudgetPolicy, now: float) -> None:
        self._tokens = policy.burst
        self._stamp = now
        self._warned = now - 1.0  # when REFUSE_FIRST was last answered
        self._count = 0  # messages since the read loop last yielded

    def take(self, policy: InboundBudgetPolicy, now: float, *, ping: bool = False) -> Verdict:
        """Charge one message (a ping: ``ping_cost``) at time ``now``."""
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(policy.burst, self._tokens + elapsed * policy.rate)
            self._stamp = now
        self._tokens -= policy.ping_cost if ping else 1.0
        if self._tokens >= 0:
            return Verdict.ALLOW
        if self._tokens < -policy.burst:
            return Verdict.CLOSE
        if now - self._warned >= 1.0:
            self._warned = now
            return Verdict.REFUSE_FIRST
        return Verdict.REFUSE

    def tick(self, policy: InboundBudgetPolicy) -> bool:
        """Count one message handled; True when the read loop should yield now."""
        self._count += 1
        if self._count >= policy.yield_every:
            self._count = 0
            return True
        return False
