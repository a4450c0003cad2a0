"""The bus consumer: ``alert_triggered`` events from the history stream of room ``alerts``,
read through a Redis Streams consumer group so the replicas share the work.

* Only ``alert_triggered`` entries are applied; everything else (including the
  ``alert_escalated``/``alert_acknowledged``... this service publishes itself) is acked
  and skipped. ``alert_triggered`` entries whose ``sender`` is this service (the echo of a
  gRPC ``Trigger``) are skipped too: the gRPC call already applied them.
* An entry is acked after it is applied; applying is idempotent (the entry id is
  remembered for a day, and the alert id / dedup key make a repeat an update), so a crash
  between applying and acking is harmless.
* Every ``reclaim_interval`` the replica takes over entries another consumer has kept
  pending for longer than ``reclaim_idle_ms`` (XAUTOCLAIM): a crashed replica's entries are
  applied within ``reclaim_idle_ms + reclaim_interval``.
* Invalid alerts are logged, counted and acked (a poison entry never loops).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, cast

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from roomgate_common import keys
from roomgate_common.errors import BusBusy, BusUnavailable
from roomgate_common.jsondepth import too_deep
from roomgate_common.redis_adapter import translate_errors
from roomgate_common.telemetry import extract_trace

from roomgate_escalation.alerts import AlertService
from roomgate_escalation.errors import EscalationError
from roomgate_escalation.events import ALERTS_ROOM
from roomgate_escalation.metrics import EscalationMetrics
from roomgate_escalation.policy import ALERT_ID_PATTERN

log = logging.getLogger(__name__)
tracer = trace.get_tracer("roomgate.escalation")

BLOCK_MS = 500
READ_COUNT = 100


class BusConsumer:
    def __init__(
        self,
        alerts: AlertService,
        metrics: EscalationMetrics,
        *,
        group: str,
        consumer: str,
        reclaim_idle_ms: int,
        reclaim_interval: float,
    ) -> None:
        self.alerts = alerts
        self.redis = alerts.store.redis
        self.metrics = metrics
        self.stream = keys.room_history(ALERTS_ROOM)
        self.group = group
        self.consumer = consumer
        self.reclaim_idle_ms = reclaim_idle_ms
        self.reclaim_interval = reclaim_interval
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._busy = False

    async def start(self) -> None:
        try:
            await self.alerts.store.ensure_group(self.stream, self.group)
        except (BusUnavailable, BusBusy):
            # Pods start together: Redis may come a few seconds after this one. The loop
            # retries, and its first read then gets NOGROUP and creates the group.
            log.warning("redis unavailable at start, bus consumer waits for it")
        self._task = asyncio.create_task(self._run(), name="escalation-bus")

    async def stop(self, grace: float) -> None:
        """Stop reading; an entry being applied gets ``grace`` to finish (else it stays
        pending and another replica reclaims it)."""
        self._stopping.set()
        if self._task is None:
            return
        try:
            if not self._busy:  # blocked in XREADGROUP: nothing to finish
                raise TimeoutError
            await asyncio.wait_for(asyncio.shield(self._task), grace)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_reclaim = 0.0
        while not self._stopping.is_set():
            try:
                if loop.time() >= next_reclaim:
                    next_reclaim = loop.time() + self.reclaim_interval
                    await self.reclaim()
                async with translate_errors("read alerts stream"):
                    res = await self.redis.xreadgroup(
                        self.group,
                        self.consumer,
                        {self.stream: ">"},
                        count=READ_COUNT,
                        block=BLOCK_MS,
                    )
                for _stream, entries in cast(list[Any], res or []):
                    for entry_id, fields in entries:
                        await self.handle(entry_id, fields)
            except (BusUnavailable, BusBusy):
                log.warning("redis unavailable, bus consumer paused")
                await asyncio.sleep(0.5)
            except Exception as exc:
                if "NOGROUP" in str(exc):  # the stream or group was deleted: recreate
                    with contextlib.suppress(BusUnavailable, BusBusy):
                        await self.alerts.store.ensure_group(self.stream, self.group)
                    continue
                log.exception("bus consumer error")
                await asyncio.sleep(0.5)

    async def reclaim(self) -> int:
        """Take over entries pending too long with other (dead) consumers; apply them."""
        handled = 0
        start = "0-0"
        for _ in range(10):
            async with translate_errors("reclaim"):
                res = await self.redis.xautoclaim(
                    self.stream,
                    self.group,
                    self.consumer,
                    min_idle_time=self.reclaim_idle_ms,
                    start_id=start,
                    count=READ_COUNT,
                )
            start = res[0].decode() if isinstance(res[0], bytes) else str(res[0])
            entries = res[1]
            deleted = res[2] if len(res) > 2 else []
            if deleted:  # trimmed from history before anyone applied them
                async with translate_errors("ack deleted"):
                    await self.redis.xack(self.stream, self.group, *deleted)
                log.warning("pending bus entries trimmed before applied", extra={"n": len(deleted)})
            for entry_id, fields in entries:
                if fields is None:
                    continue
                self.metrics.bus_entries.labels("reclaimed").inc()
                await self.handle(entry_id, fields)
                handled += 1
            if start == "0-0":
                break
        return handled

    async def handle(self, entry_id: bytes | str, fields: dict[bytes, bytes]) -> None:
        entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        self._busy = True
        try:
            outcome = await self._apply(entry, fields)
            self.metrics.bus_entries.labels(outcome).inc()
            async with translate_errors("ack"):
                await self.redis.xack(self.stream, self.group, entry)
        finally:
            self._busy = False

    async def _apply(self, entry: str, fields: dict[bytes, bytes]) -> str:
        raw = fields.get(b"m", b"")
        if too_deep(raw):
            return "invalid"
        try:
            envelope: Any = json.loads(raw)
        except ValueError:
            return "invalid"
        if not isinstance(envelope, dict) or envelope.get("type") != "alert_triggered":
            return "skipped"
        sender = str(envelope.get("sender") or "")
        if sender == self.alerts.events.sender:
            return "skipped"
        metadata = envelope.get("metadata") if isinstance(envelope.get("metadata"), dict) else {}
        envelope_id = str(envelope.get("id") or "")
        default_id = envelope_id if ALERT_ID_PATTERN.fullmatch(envelope_id) else f"bus-{entry}"
        with tracer.start_as_current_span(
            "consume alert_triggered",
            context=extract_trace(metadata),
            kind=SpanKind.CONSUMER,
            attributes={"roomgate.stream_entry": entry},
        ):
            try:
                _record, outcome = await self.alerts.trigger(
                    envelope.get("data"),  # parse_alert refuses anything but an object
                    source="bus",
                    by=sender[:128],
                    default_id=default_id,
                    seen=entry,
                    publish=False,
                )
            except EscalationError as exc:
                log.warning("bus alert refused", extra={"entry": entry, "reason": str(exc)})
                return "invalid"
        return "duplicate" if outcome == "seen" else "applied"
