"""Draining: every client (or a fraction of them, a control command) is hinted to
reconnect elsewhere with jitter and closed with 1012 in waves over ``drain_seconds``, so
a rollout or a scale-down causes no reconnect storm. A full drain also reports the
gateway not ready and draining in its presence, and refuses new connections."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import Awaitable, Callable

from roomgate_gateway.metrics import GatewayMetrics
from roomgate_gateway.rooms import RoomTable
from roomgate_gateway.store import BUS_ERRORS


class Drain:
    def __init__(
        self,
        table: RoomTable,
        *,
        report_presence: Callable[[], Awaitable[None]],
        waves: int,
        seconds: float,
        metrics: GatewayMetrics,
    ) -> None:
        self._table = table
        self._report = report_presence
        self._waves = max(1, waves)
        self._seconds = seconds
        self._metrics = metrics
        self.draining = False

    async def drain(self, partial: float = 1.0) -> None:
        """Hint every client (or ``partial`` of them) to reconnect elsewhere with jitter and
        close them with 1012 in waves over ``drain_seconds``: no reconnect storm."""
        if partial >= 1.0:
            self.draining = True
            self._metrics.draining.set(1)
            with contextlib.suppress(*BUS_ERRORS):
                await self._report()
        conns = list(self._table.connections)
        random.shuffle(conns)
        conns = conns[: math.ceil(len(conns) * min(1.0, max(0.0, partial)))]
        waves = self._waves
        per_wave = math.ceil(len(conns) / waves) if conns else 0
        pause = self._seconds / waves
        grace = max(0.1, pause)
        for i in range(waves):
            wave = conns[i * per_wave : (i + 1) * per_wave]
            if not wave and i * per_wave >= len(conns):
                break
            await asyncio.gather(*(c.drain(grace) for c in wave))
            if (i + 1) * per_wave < len(conns):
                await asyncio.sleep(pause)
