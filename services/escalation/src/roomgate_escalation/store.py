"""The escalation service's Redis store: alerts, timelines, durable timers, claims.

Every change of several keys is one Lua script (the ``store_*.lua`` files beside this
module; nothing is ever half-written), and every
script takes the time from Redis (``TIME``), so all replicas share one clock. Keys are in
``roomgate_common.keys`` (``esc_*``, ``ESC_*``).

Timers: ``ESC_DUE`` holds alert id -> due time (ms) of the alert's next level. ``claim``
atomically takes the due members, moves their score to ``now + lease`` and records a claim
token in ``ESC_CLAIMS``; a replica that dies after claiming simply lets the lease run out
and the timer becomes due again for everyone. ``begin_fire`` checks the token
*and* that the lease has at least ``margin`` left (fencing); ``complete_fire`` checks the
token, records the level and schedules the next one; ``release`` hands a claim back (due
at once) on shutdown.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from redis.exceptions import ResponseError
from roomgate_common import keys
from roomgate_common.lua import load_lua
from roomgate_common.redis_adapter import Redis, translate_errors

# The scripts are the store_*.lua files beside this module; all but RELEASE start with the
# store_now.lua prelude (``now``, ``entry``).
_NOW = "store_now.lua"

TRIGGER = load_lua(__package__, _NOW, "store_trigger.lua")
CLAIM = load_lua(__package__, _NOW, "store_claim.lua")
BEGIN_FIRE = load_lua(__package__, _NOW, "store_fence.lua", "store_begin_fire.lua")
COMPLETE_FIRE = load_lua(__package__, _NOW, "store_complete_fire.lua")
RELEASE = load_lua(__package__, "store_release.lua")
ACKNOWLEDGE = load_lua(__package__, _NOW, "store_acknowledge.lua")
RESOLVE = load_lua(__package__, _NOW, "store_resolve.lua")


def _s(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def _body(**fields: Any) -> str:
    """A timeline entry without ``at``/``event`` (the scripts add them). Never ``{}``."""
    return json.dumps({"by": "", **fields}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class TriggerResult:
    outcome: str  # created, updated, seen, resolved, full, retry
    alert_id: str
    record: AlertRecord | None = None  # the alert after the change (created, updated)


@dataclass(frozen=True, slots=True)
class Claimed:
    alert_id: str
    token: str


@dataclass(frozen=True, slots=True)
class ClaimBatch:
    now_ms: int
    next_due_ms: int  # -1: nothing scheduled
    claimed: list[Claimed]


@dataclass(frozen=True, slots=True)
class FireStart:
    now_ms: int
    level: int  # 0-based index of the level to fire
    plan_json: str
    created_ms: int
    due_ms: int
    recover_since_ms: int | None  # set when an earlier holder may have published already
    data_json: str
    severity: str
    traceparent: str
    title: str


@dataclass(frozen=True, slots=True)
class Transition:
    outcome: str  # changed, unchanged, missing
    previous: str
    published: bool


@dataclass(slots=True)
class AlertRecord:
    """An alert as stored (``fields`` decoded) plus its timeline (oldest first)."""

    fields: dict[str, str]
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def get(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default)

    def int(self, name: str) -> int:
        value = self.fields.get(name, "")
        return int(value) if value else 0


class EscalationStore:
    """The Redis side of the escalation service (one per replica)."""

    def __init__(self, redis: Redis, *, timeline_max: int, retention_s: int) -> None:
        self.redis = redis
        self.timeline_max = timeline_max
        self.retention_s = retention_s
        self._trigger = redis.register_script(TRIGGER)
        self._claim = redis.register_script(CLAIM)
        self._begin = redis.register_script(BEGIN_FIRE)
        self._complete = redis.register_script(COMPLETE_FIRE)
        self._release = redis.register_script(RELEASE)
        self._ack = redis.register_script(ACKNOWLEDGE)
        self._resolve = redis.register_script(RESOLVE)

    # --- triggers -------------------------------------------------------------------------

    async def dedup_target(self, dedup_key: str) -> tuple[str, str]:
        """(current mapping, id of the open alert it names or '')."""
        async with translate_errors("dedup lookup"):
            current = _s(await self.redis.get(keys.esc_dedup(dedup_key)))
            if not current:
                return "", ""
            state = _s(await self.redis.hget(keys.esc_alert(current), "state"))
        return current, current if state and state != "resolved" else ""

    async def trigger(
        self,
        *,
        alert_id: str,
        data_json: str,
        severity: str,
        title: str,
        policy: str,
        plan_json: str,
        first_offset_ms: int,
        dedup_key: str,
        expected_dedup: str,
        traceparent: str,
        by: str,
        seen: str,
        seen_ttl_ms: int,
        max_active: int,
    ) -> TriggerResult:
        alert_key = keys.esc_alert(alert_id)
        async with translate_errors("trigger"):
            res = await self._trigger(
                keys=[
                    alert_key,
                    keys.esc_timeline(alert_id),
                    keys.esc_dedup(dedup_key) if dedup_key else alert_key,
                    keys.ESC_DUE,
                    keys.ESC_ACTIVE,
                    keys.ESC_COUNTS,
                    keys.esc_seen(seen) if seen else alert_key,
                ],
                args=[
                    alert_id,
                    data_json,
                    severity,
                    title,
                    policy,
                    plan_json,
                    first_offset_ms,
                    dedup_key,
                    traceparent,
                    _body(by=by),
                    self.timeline_max,
                    seen_ttl_ms if seen else 0,
                    max_active,
                    expected_dedup,
                ],
            )
        record = None
        if len(res) > 2:
            flat = [_s(x) for x in res[2]]
            record = AlertRecord(fields=dict(zip(flat[::2], flat[1::2], strict=True)))
        return TriggerResult(outcome=_s(res[0]), alert_id=_s(res[1]), record=record)

    # --- timers ---------------------------------------------------------------------------

    async def claim(self, owner: str, lease_ms: int, batch: int) -> ClaimBatch:
        async with translate_errors("claim timers"):
            res = await self._claim(
                keys=[keys.ESC_DUE, keys.ESC_CLAIMS], args=[owner, lease_ms, batch]
            )
        items = [_s(x) for x in res[2:]]
        return ClaimBatch(
            now_ms=int(res[0]),
            next_due_ms=int(res[1]),
            claimed=[Claimed(items[i], items[i + 1]) for i in range(0, len(items), 2)],
        )

    def _fence_keys(self, alert_id: str) -> list[str]:
        return [keys.esc_alert(alert_id), keys.ESC_CLAIMS, keys.ESC_DUE]

    async def begin_fire(self, alert_id: str, token: str, margin_ms: int) -> FireStart | None:
        """None when the claim is lost (lease expired, taken over) or the alert is closed."""
        async with translate_errors("begin fire"):
            res = await self._begin(
                keys=self._fence_keys(alert_id), args=[alert_id, token, margin_ms]
            )
        if _s(res[0]) != "ok":
            return None
        previous = _s(res[6])
        return FireStart(
            now_ms=int(res[1]),
            level=int(_s(res[2]) or 0),
            plan_json=_s(res[3]) or "[]",
            created_ms=int(_s(res[4]) or 0),
            due_ms=int(_s(res[5]) or 0),
            recover_since_ms=int(previous.split(":")[1]) if previous else None,
            data_json=_s(res[7]) or "{}",
            severity=_s(res[8]),
            traceparent=_s(res[9]),
            title=_s(res[10]),
        )

    async def complete_fire(
        self,
        alert_id: str,
        token: str,
        level: int,
        targets: Sequence[str],
        next_due_ms: int | None,
    ) -> int | None:
        """Record level ``level`` as fired and schedule the next; the Redis time, or None."""
        async with translate_errors("complete fire"):
            res = await self._complete(
                keys=[
                    keys.esc_alert(alert_id),
                    keys.esc_timeline(alert_id),
                    keys.ESC_CLAIMS,
                    keys.ESC_DUE,
                    keys.ESC_COUNTS,
                ],
                args=[
                    alert_id,
                    token,
                    level,
                    _body(level=level + 1, targets=list(targets)),
                    self.timeline_max,
                    -1 if next_due_ms is None else next_due_ms,
                ],
            )
        return int(res[1]) if _s(res[0]) == "ok" else None

    async def release(self, alert_id: str, token: str) -> bool:
        async with translate_errors("release claim"):
            res = await self._release(
                keys=[keys.ESC_CLAIMS, keys.ESC_DUE, keys.esc_alert(alert_id)],
                args=[alert_id, token],
            )
        return bool(res)

    # --- rooms (recovery of an interrupted fire) ------------------------------------------

    async def history_contains(
        self, room: str, since_ms: int, envelope_id: str, *, skew_ms: int = 60_000
    ) -> bool | None:
        """Whether the room's history holds the envelope, scanning back from the newest entry
        to the first one published before ``since_ms - skew_ms`` (envelope timestamps come
        from the publishers' clocks). None when the history was trimmed before that point
        and the answer is unknown."""
        needle = b'{"id":' + json.dumps(envelope_id).encode() + b","
        stream = keys.room_history(room)
        end = "+"
        async with translate_errors("history scan"):
            while True:
                page = cast(
                    list[tuple[bytes, dict[bytes, bytes]]],
                    await self.redis.xrevrange(stream, max=end, count=200),
                )
                for _entry_id, fields in page:
                    raw = fields.get(b"m", b"")
                    if raw.startswith(needle):
                        return True
                    try:
                        stamp = json.loads(raw).get("timestamp", "")
                        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
                    except (ValueError, AttributeError):
                        continue
                    if moment.timestamp() * 1000 < since_ms - skew_ms:
                        return False
                if len(page) < 200:
                    break
                end = "(" + _s(page[-1][0])
            first = cast(list[Any], await self.redis.xrange(stream, count=1))
        if not first or _s(first[0][0]) == "1-1":
            return False  # nothing was ever trimmed: the whole history was scanned
        return None

    # --- acknowledge / resolve ------------------------------------------------------------

    async def acknowledge(self, alert_id: str, by: str) -> Transition:
        async with translate_errors("acknowledge"):
            res = await self._ack(
                keys=[
                    keys.esc_alert(alert_id),
                    keys.esc_timeline(alert_id),
                    keys.ESC_DUE,
                    keys.ESC_COUNTS,
                ],
                args=[alert_id, by, _body(by=by), self.timeline_max],
            )
        return _transition(res)

    async def resolve(self, alert_id: str, by: str) -> Transition:
        alert_key = keys.esc_alert(alert_id)
        async with translate_errors("resolve"):
            dedup = _s(await self.redis.hget(alert_key, "dedup"))
            res = await self._resolve(
                keys=[
                    alert_key,
                    keys.esc_timeline(alert_id),
                    keys.ESC_DUE,
                    keys.ESC_COUNTS,
                    keys.ESC_ACTIVE,
                    keys.esc_dedup(dedup) if dedup else alert_key,
                    keys.ESC_CLAIMS,
                ],
                args=[alert_id, by, _body(by=by), self.timeline_max, self.retention_s],
            )
        return _transition(res)

    async def mark_published(self, alert_id: str, flag: str) -> None:
        """Note that the event of a transition (``pub_ack``, ``pub_res``) went out."""
        async with translate_errors("mark published"):
            await self.redis.hset(keys.esc_alert(alert_id), flag, "1")

    # --- reads ----------------------------------------------------------------------------

    async def get(self, alert_id: str, *, timeline: bool = True) -> AlertRecord | None:
        async with (
            translate_errors("get alert"),
            self.redis.pipeline(transaction=False) as pipe,
        ):
            pipe.hgetall(keys.esc_alert(alert_id))
            if timeline:
                pipe.lrange(keys.esc_timeline(alert_id), 0, -1)
            values = await pipe.execute()
        raw = values[0]
        if not raw or b"state" not in raw:
            return None
        record = AlertRecord(fields={_s(k): _s(v) for k, v in raw.items()})
        if timeline:
            record.timeline = [json.loads(item) for item in values[1]]
        return record

    async def active_range(self, min_score: int, offset: int, count: int) -> list[tuple[str, int]]:
        """Active alert ids with their creation ms, oldest first, from ``min_score``."""
        async with translate_errors("list active"):
            res = cast(
                list[tuple[bytes, float]],
                await self.redis.zrangebyscore(
                    keys.ESC_ACTIVE, min_score, "+inf", start=offset, num=count, withscores=True
                ),
            )
        return [(_s(member), int(score)) for member, score in res]

    async def get_many(self, alert_ids: Sequence[str]) -> list[AlertRecord | None]:
        async with (
            translate_errors("get alerts"),
            self.redis.pipeline(transaction=False) as pipe,
        ):
            for alert_id in alert_ids:
                pipe.hgetall(keys.esc_alert(alert_id))
            values = await pipe.execute()
        return [
            AlertRecord(fields={_s(k): _s(v) for k, v in raw.items()})
            if raw and b"state" in raw
            else None
            for raw in values
        ]

    async def counts(self) -> dict[str, int]:
        async with translate_errors("counts"):
            raw = await self.redis.hgetall(keys.ESC_COUNTS)
        return {_s(k): int(_s(v)) for k, v in raw.items()}

    # --- bus ------------------------------------------------------------------------------

    async def ensure_group(self, stream: str, group: str) -> None:
        """Create the consumer group at the stream's end (new entries only) if missing."""
        async with translate_errors("create group"):
            try:
                await self.redis.xgroup_create(stream, group, id="$", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise


def _transition(res: list[Any]) -> Transition:
    outcome = _s(res[0])
    if outcome == "missing":
        return Transition(outcome="missing", previous="", published=True)
    return Transition(outcome=outcome, previous=_s(res[1]), published=_s(res[2]) == "1")
