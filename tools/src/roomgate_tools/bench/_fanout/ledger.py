"""What every client received: the bookkeeping of the fan-out benchmark, free of I/O.

The publisher numbers its events (``seq``) and stamps them with their send time (``t``,
nanoseconds since the epoch). A measured window is a range of sequence numbers
``[lo, hi)``: the ledger counts, per client, the events of that range it received once and
in order, the duplicates or reordered ones apart, and keeps every publish->receive latency.
Everything outside the window (warm-up, a previous phase) is ignored.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class WindowResult:
    clients: int
    published: int
    delivered: int
    lost: int
    duplicates: int
    clients_complete: int
    latencies_ns: array[int]

    @property
    def expected(self) -> int:
        return self.clients * self.published

    def latency_ms(self, quantile: float) -> float | None:
        return percentile_ms(self.latencies_ns, quantile)


def percentile_ms(values: array[int], quantile: float) -> float | None:
    """Nearest-rank percentile of nanosecond values, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(quantile * len(ordered)) - 1))
    return ordered[rank] / 1e6


class DeliveryLedger:
    """Per-client counts of the events of the open window ``[lo, hi)``."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.lo = 0
        self.hi = 0
        self.counts = [0] * clients
        self.last_seq = [-1] * clients
        self.duplicates = 0
        self.delivered = 0
        self.latencies: array[int] = array("q")
        self._threshold = -1
        self._on_threshold: Callable[[], None] | None = None

    def open(self, lo: int, hi: int) -> None:
        """Start counting the events numbered ``lo`` .. ``hi - 1`` (forgetting the last window)."""
        self.lo, self.hi = lo, hi
        self.counts = [0] * self.clients
        self.last_seq = [lo - 1] * self.clients
        self.duplicates = 0
        self.delivered = 0
        self.latencies = array("q")

    def record(self, client: int, seq: int, sent_ns: int, received_ns: int) -> None:
        """Client ``client`` received event ``seq`` sent at ``sent_ns``."""
        if seq < self.lo or seq >= self.hi:
            return
        if seq <= self.last_seq[client]:
            self.duplicates += 1
            return
        self.last_seq[client] = seq
        self.counts[client] += 1
        self.delivered += 1
        self.latencies.append(received_ns - sent_ns)
        if self.delivered == self._threshold and self._on_threshold is not None:
            self._on_threshold()

    def notify_at(self, delivered: int, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` once when ``delivered`` reaches the given total."""
        self._threshold = delivered
        self._on_threshold = callback
        if callback is not None and self.delivered >= delivered:
            callback()

    def close(self, published: int) -> WindowResult:
        """The figures of the window, ``published`` events having been sent in it."""
        complete = sum(1 for c in self.counts if c == published)
        return WindowResult(
            clients=self.clients,
            published=published,
            delivered=self.delivered,
            lost=sum(max(0, published - c) for c in self.counts),
            duplicates=self.duplicates,
            clients_complete=complete,
            latencies_ns=self.latencies,
        )
