"""Write coalescing: what one loop turn hands a connection leaves in one socket write.

A burst reaches the gateway as many bus messages read back to back; written one by one,
each recipient costs one ``transport.write`` (a ``send`` system call) per message. Instead,
a connection whose socket takes frames directly stages what it is handed (``Connection``),
and the first staging of the turn asks this object for a flush at the end of the turn
(``loop.call_soon``: it runs once the bus reader has nothing more buffered). The flush gives
each staged connection one write of the frames it was handed, in order: the same frames as
one by one (each message's built once for all its recipients), so clients see no change;
only the number of system calls falls. (``batch`` frames stay what the write-behind task
sends to a client whose socket pushed back.)

A turn with one message per connection (steady traffic) writes each message's shared frame,
as before. Deliveries (room events, by every path: fan-out, replay, mailbox, resends) and
their bytes are counted where they are written, here and by the connection's write-behind
task, and reach the metrics once per flush.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from roomgate_gateway.metrics import GatewayMetrics
    from roomgate_gateway.outbound import Outgoing


class Staging(Protocol):
    def flush_staged(self, counts: WriteCoalescer | None = None) -> None:
        """Write what was staged this turn; count the write in ``counts``."""


class WriteCoalescer:
    __slots__ = ("_metrics", "_scheduled", "_staged", "delivered", "nbytes", "writes")

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._staged: list[Staging] = []
        self._scheduled = False
        # Counted as written (plain ints: a metric's lock per write would cost more than
        # the write), published to the metrics once per flush.
        self.writes = 0
        self.delivered = 0
        self.nbytes = 0

    def staged(self, conn: Staging) -> None:
        """``conn`` staged its first frame of this turn: flush it at the turn's end."""
        self._staged.append(conn)
        if not self._scheduled:  # (publish_soon, inlined: this runs once per recipient)
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def publish_soon(self) -> None:
        """Counts were taken outside a flush: one at the turn's end publishes them."""
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def wrote(self, items: list[Outgoing]) -> None:
        """One socket write carried ``items`` (outside a flush: published with the next)."""
        self.writes += 1
        for item in items:
            if item.offset:  # room events (the gateway's own replies have no offset)
                self.delivered += item.count
                self.nbytes += len(item.frame)
        self.publish_soon()

    def flush(self) -> None:
        self._scheduled = False
        staged, self._staged = self._staged, []
        for conn in staged:
            conn.flush_staged(self)
        if self.writes:
            self._metrics.socket_writes.inc(self.writes)
            self._metrics.deliveries.inc(self.delivered)
            self._metrics.bytes_out.inc(self.nbytes)
            self.writes = self.delivered = self.nbytes = 0
