"""The gateway's periodic upkeep, in three loops: its presence in Redis (a hash the operator
and the dashboards read — connections, rooms, applied policy generation, draining — and a
heartbeat in the gateways set), with the counts of gateways whose heartbeat stopped
forgotten (``GatewayStore.forget_gateway``); and the heartbeat sweep that closes the
clients silent beyond ``heartbeat_timeout`` (4000) and samples the queue depth; and the
sampling of the event loop's lag (``event_loop_lag_seconds``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from roomgate_gateway.codes import CloseCode
from roomgate_gateway.limits import Limits
from roomgate_gateway.metrics import LAG_SAMPLE_SECONDS, GatewayMetrics
from roomgate_gateway.rooms import RoomTable
from roomgate_gateway.store import BUS_ERRORS, GatewayStore
from roomgate_gateway.tasks import Tasks, stopping

log = logging.getLogger(__name__)


class Upkeep:
    def __init__(
        self,
        store: GatewayStore,
        table: RoomTable,
        *,
        served_rooms: Callable[[], int],
        limits: Callable[[], Limits],
        draining: Callable[[], bool],
        presence_interval: float,
        metrics: GatewayMetrics,
    ) -> None:
        self._store = store
        self._table = table
        self._served_rooms = served_rooms
        self._limits = limits
        self._draining = draining
        self._interval = presence_interval
        self._metrics = metrics

    def start(self, tasks: Tasks) -> None:
        tasks.start(self._presence_loop(), name="presence")
        tasks.start(self._sweep_loop(), name="heartbeat-sweeper")
        tasks.start(self._lag_loop(), name="event-loop-lag")

    async def _lag_loop(self) -> None:
        """``event_loop_lag_seconds``: how much later than asked a sleep ends."""
        loop = asyncio.get_running_loop()
        while not stopping():
            asked = loop.time() + LAG_SAMPLE_SECONDS
            await asyncio.sleep(LAG_SAMPLE_SECONDS)
            self._metrics.event_loop_lag.observe(max(0.0, loop.time() - asked))

    async def report_presence(self) -> None:
        """This gateway's presence hash, now (raises ``BUS_ERRORS``)."""
        await self._store.report_presence(
            {
                "connections": len(self._table.connections),
                "rooms": self._served_rooms(),
                "applied_generation": self._limits().generation,
                "draining": int(self._draining()),
                "ts": time.time(),
            },
            ttl=max(3, int(self._interval * 3)),
        )

    async def forget_dead_gateways(self) -> None:
        stale_before = time.time() - self._interval * 6
        for gateway_id in await self._store.dead_gateways(stale_before):
            await self._store.forget_gateway(gateway_id)
            log.info("forgot the connection counts of dead gateway %s", gateway_id)

    async def _presence_loop(self) -> None:
        while not stopping():
            with contextlib.suppress(*BUS_ERRORS):
                await self.report_presence()
                await self.forget_dead_gateways()
            await asyncio.sleep(self._interval)

    async def _sweep_loop(self) -> None:
        while not stopping():
            limits = self._limits()
            await asyncio.sleep(min(1.0, limits.heartbeat_interval / 4))
            now, timeout = time.monotonic(), self._limits().heartbeat_timeout
            silent = [
                c for c in self._table.connections if c.session.heartbeat_expired(now, timeout)
            ]
            for conn in silent:
                await conn.close(CloseCode.HEARTBEAT_TIMEOUT)
            self._metrics.queue_depth.set(sum(c.queue_depth for c in self._table.connections))
