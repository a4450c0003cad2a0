"""The alert operations (trigger, acknowledge, resolve, get, list) over the store and the
room publisher. Both the gRPC servicer and the bus consumer come through here."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from roomgate_common.envelope import utc_now_iso
from roomgate_common.telemetry import inject_trace

from roomgate_escalation.errors import (
    AlertClosed,
    AlertNotFound,
    EscalationError,
    InvalidAlert,
    TooManyAlerts,
)
from roomgate_escalation.events import ALERTS_ROOM, AlertEvents
from roomgate_escalation.metrics import EscalationMetrics
from roomgate_escalation.policy import (
    ACTIVE_STATES,
    SEVERITIES,
    AlertState,
    PolicyConfig,
    canonical_alert_id,
    check_principal,
    parse_alert,
    plan_from_json,
    plan_to_json,
)
from roomgate_escalation.store import AlertRecord, EscalationStore

log = logging.getLogger(__name__)

SEEN_TTL_MS = 24 * 3600 * 1000
"""How long a bus entry id is remembered as applied (redeliveries come within minutes)."""

MAX_LIST = 1000
DEFAULT_LIST = 100


def iso_ms(ms: int) -> str:
    return utc_now_iso(datetime.fromtimestamp(ms / 1000, UTC))


def fired_rooms(record: AlertRecord) -> list[str]:
    """``alerts`` plus every target room of the levels fired so far."""
    plan = plan_from_json(record.get("plan") or "[]")
    rooms = [ALERTS_ROOM]
    for level in plan[: record.int("level")]:
        rooms.extend(level.targets)
    return list(dict.fromkeys(rooms))


class AlertService:
    def __init__(
        self,
        store: EscalationStore,
        events: AlertEvents,
        config: PolicyConfig,
        metrics: EscalationMetrics,
        *,
        max_active: int,
        on_scheduled: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.events = events
        self.config = config
        self.metrics = metrics
        self.max_active = max_active
        self.on_scheduled = on_scheduled

    async def trigger(
        self,
        data: object,
        *,
        source: str,
        by: str,
        default_id: str = "",
        seen: str = "",
        publish: bool = True,
    ) -> tuple[AlertRecord, str]:
        """Create the alert, or update the open alert with the same id or dedup key.

        ``seen`` (a bus entry id) makes a redelivered entry a no-op; ``publish`` sends
        ``alert_triggered`` into ``alerts`` (gRPC triggers; bus triggers are already there).
        Returns (alert, outcome): outcome is ``created``, ``updated`` or ``seen`` (a bus
        entry applied before).
        """
        alert = parse_alert(data, self.config, default_id=default_id or str(uuid.uuid4()))
        carrier: dict[str, Any] = {}
        inject_trace(carrier)
        first = round(alert.plan[0].at * 1000) if alert.plan else -1
        for _attempt in range(8):
            target_id, expected = alert.alert_id, ""
            if alert.dedup_key:
                expected, open_id = await self.store.dedup_target(alert.dedup_key)
                target_id = open_id or alert.alert_id
            stored = dict(alert.data)
            if target_id != alert.alert_id:
                stored["alert_id"] = target_id
            result = await self.store.trigger(
                alert_id=target_id,
                data_json=json.dumps(stored, separators=(",", ":"), ensure_ascii=False),
                severity=alert.severity,
                title=alert.title,
                policy=alert.policy,
                plan_json=plan_to_json(alert.plan),
                first_offset_ms=first,
                dedup_key=alert.dedup_key,
                expected_dedup=expected,
                traceparent=str(carrier.get("traceparent", "")),
                by=by,
                seen=seen,
                seen_ttl_ms=SEEN_TTL_MS,
                max_active=self.max_active,
            )
            if result.outcome == "retry":
                continue
            if result.outcome == "resolved":
                if target_id != alert.alert_id:
                    continue  # the dedup target was resolved meanwhile: a new alert
                self.metrics.triggers.labels(source, "closed").inc()
                raise AlertClosed(f"alert {target_id} is resolved; use a new alert_id")
            if result.outcome == "full":
                self.metrics.triggers.labels(source, "full").inc()
                raise TooManyAlerts(f"{self.max_active} active alerts")
            break
        else:
            raise EscalationError("dedup key contention, try again")
        record = result.record or await self.store.get(result.alert_id, timeline=False)
        if record is None:  # resolved and expired within the call: vanishingly rare
            raise AlertNotFound(result.alert_id)
        created = result.outcome == "created"
        self.metrics.triggers.labels(source, result.outcome).inc()
        if result.outcome == "seen":
            return record, "seen"
        if created:
            self.metrics.transitions.labels("triggered").inc()
            if alert.plan:
                self.on_scheduled()
        if publish:
            await self.events.publish(
                ALERTS_ROOM,
                "alert_triggered",
                f"{record.get('id')}:trig:{record.int('trig')}",
                json.loads(record.get("data") or "{}"),
            )
        return record, result.outcome

    async def acknowledge(self, alert_id: str, by: str) -> tuple[AlertRecord, bool]:
        alert_id = canonical_alert_id(alert_id)
        check_principal(by)
        transition = await self.store.acknowledge(alert_id, by)
        return await self._after_transition(alert_id, transition, AlertState.ACKNOWLEDGED)

    async def resolve(self, alert_id: str, by: str) -> tuple[AlertRecord, bool]:
        alert_id = canonical_alert_id(alert_id)
        check_principal(by)
        transition = await self.store.resolve(alert_id, by)
        return await self._after_transition(alert_id, transition, AlertState.RESOLVED)

    async def _after_transition(
        self, alert_id: str, transition: Any, to: AlertState
    ) -> tuple[AlertRecord, bool]:
        if transition.outcome == "missing":
            raise AlertNotFound(f"no alert {alert_id}")
        record = await self.store.get(alert_id)
        if record is None:
            raise AlertNotFound(f"no alert {alert_id}")
        changed = transition.outcome == "changed"
        # Publish on the change, or again when a previous call changed the state but died
        # before its event went out (the retry heals it; same envelope id).
        if changed or (transition.previous == to.value and not transition.published):
            if changed:
                self.metrics.transitions.labels(to.value).inc()
            if to is AlertState.ACKNOWLEDGED:
                type_, suffix, flag = "alert_acknowledged", "ack", "pub_ack"
                data = {
                    "alert_id": alert_id,
                    "by": record.get("ack_by"),
                    "acknowledged_at": iso_ms(record.int("ack_at")),
                }
            else:
                type_, suffix, flag = "alert_resolved", "res", "pub_res"
                data = {
                    "alert_id": alert_id,
                    "by": record.get("res_by"),
                    "resolved_at": iso_ms(record.int("res_at")),
                }
            data.update(severity=record.get("severity"), title=record.get("title"))
            await self.events.publish_many(fired_rooms(record), type_, f"{alert_id}:{suffix}", data)
            await self.store.mark_published(alert_id, flag)
            record.fields[flag] = "1"
        return record, changed

    async def get(self, alert_id: str) -> AlertRecord:
        alert_id = canonical_alert_id(alert_id)
        record = await self.store.get(alert_id)
        if record is None:
            raise AlertNotFound(f"no alert {alert_id}")
        return record

    async def list_active(
        self,
        *,
        severities: Sequence[str] = (),
        states: Sequence[str] = (),
        target: str = "",
        limit: int = 0,
        page_token: str = "",
    ) -> tuple[list[AlertRecord], str]:
        """Active alerts oldest first, filtered; (alerts, next page token or '')."""
        for severity in severities:
            if severity not in SEVERITIES:
                raise InvalidAlert("invalid_filter", f"unknown severity {severity[:32]!r}")
        active_values = {s.value for s in ACTIVE_STATES}
        for state in states:
            if state not in active_values:
                raise InvalidAlert("invalid_filter", f"{state!r} is not an active state")
        rooms = set(self.config.resolve_target(target)) if target else set()
        if limit < 0 or limit > MAX_LIST:
            raise InvalidAlert("invalid_filter", f"limit must be 1..{MAX_LIST}")
        limit = limit or DEFAULT_LIST
        cursor_score, cursor_id = -1, ""
        if page_token:
            score, sep, cursor_id = page_token.partition(":")
            if not sep or not score.isdigit():
                raise InvalidAlert("invalid_filter", "bad page_token")
            cursor_score = int(score)
        out: list[AlertRecord] = []
        offset = 0
        while len(out) < limit:
            page = await self.store.active_range(max(cursor_score, 0), offset, 200)
            if not page:
                return out, ""
            offset += len(page)
            candidates = [
                (aid, created)
                for aid, created in page
                if not (created == cursor_score and aid <= cursor_id)
            ]
            records = await self.store.get_many([aid for aid, _ in candidates])
            for (aid, created), record in zip(candidates, records, strict=True):
                if record is None:
                    continue
                if severities and record.get("severity") not in severities:
                    continue
                if states and record.get("state") not in states:
                    continue
                if rooms:
                    plan = plan_from_json(record.get("plan") or "[]")
                    if not rooms & {room for lv in plan for room in lv.targets}:
                        continue
                out.append(record)
                if len(out) == limit:
                    return out, f"{created}:{aid}"
        return out, ""
