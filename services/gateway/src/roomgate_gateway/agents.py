"""Announcing agent presence (``agent_connected``/``agent_disconnected`` into ``agents``
and ``agent-{id}``), coalesced by ``presence.PresencePolicy``: one announcement per agent
per ``AGENT_PRESENCE_WINDOW`` at most, however often the agent reconnects. Publishing runs
in tasks this object owns (at most one per agent and window); each failure is counted
(``drops_total{reason="presence_publish_failed"}``) and logged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from roomgate_common.errors import BusBusy, BusUnavailable
from roomgate_common.publisher import Publisher

from roomgate_gateway.metrics import GatewayMetrics
from roomgate_gateway.presence import PresencePolicy

log = logging.getLogger(__name__)


class AgentPresence:
    def __init__(
        self,
        publisher: Publisher,
        metrics: GatewayMetrics,
        *,
        gateway_id: str,
        window: float,
    ) -> None:
        self._publisher = publisher
        self._metrics = metrics
        self._gateway_id = gateway_id
        self._policy = PresencePolicy(window)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def changed(self, agent_id: str, connected: bool) -> None:
        """The agent now has (or no longer has) a connection on this gateway."""
        announce = self._policy.changed(agent_id, connected, time.monotonic())
        if announce is not None:
            self._announce(agent_id, announce)

    def _due(self, agent_id: str) -> None:
        self._timers.pop(agent_id, None)
        announce = self._policy.due(agent_id, time.monotonic())
        if announce is not None:
            self._announce(agent_id, announce)

    def _announce(self, agent_id: str, connected: bool) -> None:
        loop = asyncio.get_running_loop()
        self._timers[agent_id] = loop.call_later(self._policy.window, self._due, agent_id)
        task = loop.create_task(self._publish(agent_id, connected))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, agent_id: str, connected: bool) -> None:
        type_ = "agent_connected" if connected else "agent_disconnected"
        data = {"agent_id": _int_or_str(agent_id), "gateway": self._gateway_id}
        for room in ("agents", f"agent-{agent_id}"):
            try:
                await self._publisher.publish(
                    room, type_, data, sender=f"agent-{agent_id}", priority="high"
                )
            except (BusUnavailable, BusBusy) as exc:
                self._metrics.drops.labels("presence_publish_failed").inc()
                log.warning("%s of agent %s not published: %s", type_, agent_id, exc)

    async def close(self, grace: float = 2.0) -> None:
        """Announce what the open windows still hold, wait (bounded) for the publishes."""
        for agent_id, timer in list(self._timers.items()):
            timer.cancel()
            self._due(agent_id)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._tasks), grace)


def _int_or_str(value: str) -> int | str:
    return int(value) if value.isdigit() else value
