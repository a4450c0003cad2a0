"""Admission of a connection: its token authenticated by auth (span, latency metric), then
counted cluster-wide against the per-IP and per-principal connection limits and the
connect rate (``counts.py``) before it enters the room table; and the reverse when it
goes. An agent's connection changes its presence (``agents.py``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from opentelemetry.trace import Tracer
from roomgate_common import keys
from roomgate_common.errors import BusBusy, BusUnavailable

from roomgate_gateway.agents import AgentPresence
from roomgate_gateway.clients import AuthClient, AuthRejected, Principal
from roomgate_gateway.counts import RATE_REFUSED, ConnectionCounts
from roomgate_gateway.limits import Limits
from roomgate_gateway.metrics import GatewayMetrics
from roomgate_gateway.rooms import RoomTable
from roomgate_gateway.store import BUS_ERRORS

if TYPE_CHECKING:
    from roomgate_gateway.connection import Connection


class Admission:
    def __init__(
        self,
        auth: AuthClient,
        counts: ConnectionCounts,
        table: RoomTable,
        agent_presence: AgentPresence,
        *,
        limits: Callable[[], Limits],
        connects_per_minute: int,
        metrics: GatewayMetrics,
        tracer: Tracer,
    ) -> None:
        # The auth client (public: the gateway replaces it, e.g. a test pointing it elsewhere)
        self.auth = auth
        self._counts = counts
        self._table = table
        self._agents = agent_presence
        self._limits = limits
        self._per_minute = connects_per_minute
        self._metrics = metrics
        self._tracer = tracer

    async def authenticate(self, token: str) -> Principal:
        start = time.perf_counter()
        with self._tracer.start_as_current_span("auth") as span:
            try:
                return await self.auth.authenticate(token)
            except AuthRejected as exc:
                span.set_attribute("roomgate.auth.reason", exc.reason)
                raise
            finally:
                self._metrics.auth_latency.observe(time.perf_counter() - start)

    async def register(self, conn: Connection) -> str | None:
        """Count the connection cluster-wide; returns the refusal outcome or None."""
        assert conn.principal is not None
        limits = self._limits()
        limited = list(
            zip(
                _count_keys(conn),
                (limits.max_connections_per_ip, limits.max_connections_per_user),
                strict=True,
            )
        )
        principal = f"{conn.kind}:{conn.principal.id}"
        try:
            refused = await self._counts.admit(principal, self._per_minute, limited)
        except BusUnavailable:
            return "redis_unavailable"
        except BusBusy:  # this gateway is overloaded, Redis is fine
            return "redis_busy"
        if refused == RATE_REFUSED:
            return "limit_connect_rate"
        if refused is not None:
            return ("limit_ip", "limit_user")[refused]
        self._table.add(conn)
        if conn.kind == "agent":
            self._agents.changed(conn.user_id, True)
        return None

    async def unregister(self, conn: Connection) -> None:
        still_here = await self._table.remove(conn)
        if still_here is None:
            return
        with contextlib.suppress(*BUS_ERRORS):
            await self._counts.uncount(_count_keys(conn))
        if conn.kind == "agent":
            self._agents.changed(conn.user_id, still_here)


def _count_keys(conn: Connection) -> list[str]:
    assert conn.principal is not None
    principal = f"{conn.kind}:{conn.principal.id}"
    return [keys.conn_count_ip(conn.ip), keys.conn_count_user(principal)]
