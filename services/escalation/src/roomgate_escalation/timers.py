"""The durable timer loop of one replica: claim due levels, fire each exactly once.

Firing level L of an alert (0-based; envelope id ``<alert_id>:esc:<L+1>``):

1. ``begin_fire`` (one Lua script): the claim token is still ours, the lease has at least
   ``margin`` left, the alert is still unacknowledged and unresolved (otherwise the timer is
   dropped); it records an *intent* ``<level>:<now>``.
2. Publish ``alert_escalated`` into ``alerts`` and each target room (the room publisher),
   concurrently.
3. ``complete_fire``: the level is recorded, the next one scheduled, intent and claim
   dropped.

A replica that dies after 1 leaves the intent behind; after the lease the timer is due
again, another replica claims it, gets the intent back from ``begin_fire`` and, per room,
scans the history back to the intent's time (minus a clock-skew margin) for the
deterministic envelope id: a room that already has it is skipped. A replica stalling longer
than ``lease - margin`` between 1 and 2 is the one way to publish twice (the margin is half
the lease: 15 s by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import uuid

from opentelemetry import trace
from roomgate_common.errors import BusBusy, BusUnavailable
from roomgate_common.telemetry import extract_trace

from roomgate_escalation.alerts import iso_ms
from roomgate_escalation.events import ALERTS_ROOM, AlertEvents
from roomgate_escalation.metrics import EscalationMetrics
from roomgate_escalation.policy import due_ms, escalation_envelope_id, plan_from_json
from roomgate_escalation.store import Claimed, EscalationStore

log = logging.getLogger(__name__)
tracer = trace.get_tracer("roomgate.escalation")

GRANULARITY = 0.01
"""Shortest sleep between looks at the due set: timers due within 10 ms of each other are
claimed together instead of waking every replica once per millisecond."""

COUNTS_EVERY = 2.0
"""Seconds between refreshes of the cluster-wide alerts-by-state gauge."""


class TimerLoop:
    def __init__(
        self,
        store: EscalationStore,
        events: AlertEvents,
        metrics: EscalationMetrics,
        *,
        owner: str,
        lease_ms: int,
        poll_interval: float,
        batch: int,
        concurrency: int,
        chaos_pause: float = 0.0,
        chaos_phase: str = "",
    ) -> None:
        self.store = store
        self.events = events
        self.metrics = metrics
        # Unique per process start, so a restarted replica never reuses an old token.
        self.owner = f"{owner}:{uuid.uuid4().hex[:8]}"
        self.lease_ms = lease_ms
        self.margin_ms = lease_ms // 2
        self.poll_interval = poll_interval
        self.batch = batch
        self.concurrency = concurrency
        self.chaos_pause = chaos_pause
        self.chaos_phase = chaos_phase
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._inflight: dict[str, tuple[Claimed, asyncio.Task[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_counts = 0.0

    def wake(self) -> None:
        """Look at the due set now (a new timer may be due sooner than the next poll)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="escalation-timers")

    async def stop(self, grace: float) -> None:
        """Stop claiming, let in-flight fires finish within ``grace``, hand the rest back."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            await self._task
        held = [claimed for claimed, _ in self._inflight.values()]
        pending = [task for _, task in self._inflight.values()]
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        # Completed fires no longer hold their token: release is a no-op for them.
        for claimed in held:
            with contextlib.suppress(BusUnavailable, BusBusy):
                await self.store.release(claimed.alert_id, claimed.token)
        self._inflight.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            free = self.concurrency - len(self._inflight)
            if free <= 0:
                tasks = [task for _, task in self._inflight.values()]
                await asyncio.wait(
                    tasks, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
                )
                continue
            try:
                batch = await self.store.claim(self.owner, self.lease_ms, min(free, self.batch))
                if loop.time() - self._last_counts > COUNTS_EVERY:
                    self._last_counts = loop.time()
                    for state, count in (await self.store.counts()).items():
                        self.metrics.alerts.labels(state).set(count)
            except (BusUnavailable, BusBusy):
                log.warning("redis unavailable, timers paused")
                await self._sleep(self.poll_interval)
                continue
            except Exception:
                log.exception("timer loop error")
                await self._sleep(self.poll_interval)
                continue
            for claimed in batch.claimed:
                task = asyncio.create_task(self._fire(claimed))
                self._inflight[claimed.token] = (claimed, task)
                task.add_done_callback(functools.partial(self._forget, claimed.token))
            if len(batch.claimed) == min(free, self.batch):
                await asyncio.sleep(0)
                continue
            delay = self.poll_interval
            if batch.next_due_ms >= 0:
                delay = min(delay, max((batch.next_due_ms - batch.now_ms) / 1000, GRANULARITY))
            await self._sleep(delay)

    def _forget(self, token: str, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(token, None)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _fire(self, claimed: Claimed) -> None:
        try:
            await self._fire_level(claimed)
        except (BusUnavailable, BusBusy):
            # Keep the claim: the lease runs out and the level is fired again (recovery).
            log.warning("redis unavailable while firing", extra={"alert_id": claimed.alert_id})
        except Exception:
            log.exception("firing failed", extra={"alert_id": claimed.alert_id})

    async def _publish_once(
        self, room: str, recover_since_ms: int | None, envelope_id: str, data: dict[str, object]
    ) -> None:
        """Publish into one room; when taking over, only if its history lacks the envelope."""
        if recover_since_ms is not None:
            found = await self.store.history_contains(room, recover_since_ms, envelope_id)
            if found:
                self.metrics.recoveries.labels("skipped").inc()
                return
            self.metrics.recoveries.labels("ambiguous" if found is None else "published").inc()
        await self.events.publish(room, "alert_escalated", envelope_id, data)

    async def _fire_level(self, claimed: Claimed) -> None:
        alert_id, token = claimed.alert_id, claimed.token
        start = await self.store.begin_fire(alert_id, token, self.margin_ms)
        if start is None:
            self.metrics.claims_lost.inc()
            return
        plan = plan_from_json(start.plan_json)
        level = start.level
        if level >= len(plan):
            await self.store.complete_fire(alert_id, token, level, (), None)
            return
        rooms = list(dict.fromkeys([ALERTS_ROOM, *plan[level].targets]))
        envelope_id = escalation_envelope_id(alert_id, level + 1)
        if self.chaos_phase == "before_publish":
            await asyncio.sleep(self.chaos_pause)
        data = {
            "alert_id": alert_id,
            "level": level + 1,
            "target": plan[level].targets[0],
            "targets": list(plan[level].targets),
            "severity": start.severity,
            "title": start.title,
            "due_at": iso_ms(start.due_ms),
            "escalated_at": iso_ms(start.now_ms),
            "alert": json.loads(start.data_json),
        }
        context = extract_trace({"traceparent": start.traceparent})
        with tracer.start_as_current_span(
            "escalate",
            context=context,
            attributes={"roomgate.alert_id": alert_id, "roomgate.level": level + 1},
        ):
            await asyncio.gather(
                *(
                    self._publish_once(room, start.recover_since_ms, envelope_id, data)
                    for room in rooms
                )
            )
        if self.chaos_phase == "after_publish":
            await asyncio.sleep(self.chaos_pause)
        next_due = due_ms(start.created_ms, plan, level + 1)
        done = await self.store.complete_fire(alert_id, token, level, plan[level].targets, next_due)
        if done is None:
            self.metrics.claims_lost.inc()
            return
        self.metrics.escalations.labels(start.severity or "unknown").inc()
        self.metrics.transitions.labels("escalated").inc()
        self.metrics.timer_lag.observe(max(start.now_ms - start.due_ms, 0) / 1000)
        log.info(
            "escalated",
            extra={"alert_id": alert_id, "level": level + 1, "targets": list(plan[level].targets)},
        )
