"""The gRPC servicer: translates requests to ``AlertService`` calls and errors to status
codes. Nothing else happens here."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from roomgate.escalation.v1 import escalation_pb2 as pb
from roomgate.escalation.v1 import escalation_pb2_grpc as pb_grpc
from roomgate_common.errors import BusBusy, BusUnavailable
from roomgate_common.jsondepth import MAX_JSON_DEPTH, too_deep

from roomgate_escalation.alerts import AlertService
from roomgate_escalation.callers import current_caller
from roomgate_escalation.errors import (
    AlertClosed,
    AlertNotFound,
    EscalationError,
    InvalidAlert,
    TooManyAlerts,
)
from roomgate_escalation.policy import AlertState, plan_from_json
from roomgate_escalation.store import AlertRecord

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["EscalationService"].full_name

STATE_TO_PB = {
    AlertState.TRIGGERED.value: pb.ALERT_STATE_TRIGGERED,
    AlertState.ESCALATED.value: pb.ALERT_STATE_ESCALATED,
    AlertState.ACKNOWLEDGED.value: pb.ALERT_STATE_ACKNOWLEDGED,
    AlertState.RESOLVED.value: pb.ALERT_STATE_RESOLVED,
}
PB_TO_STATE = {v: k for k, v in STATE_TO_PB.items()}


def _ts(ms: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def alert_to_pb(record: AlertRecord, *, timeline: bool = False) -> pb.Alert:
    plan = plan_from_json(record.get("plan") or "[]")
    fired = record.int("level")
    msg = pb.Alert(
        alert_id=record.get("id"),
        state=STATE_TO_PB.get(record.get("state"), pb.ALERT_STATE_UNSPECIFIED),
        severity=record.get("severity"),
        title=record.get("title"),
        dedup_key=record.get("dedup"),
        policy=record.get("policy"),
        data_json=record.get("data"),
        created_at=_ts(record.int("created")),
        updated_at=_ts(record.int("updated")),
        levels_fired=fired,
        trigger_count=record.int("trig"),
        acknowledged_by=record.get("ack_by"),
        resolved_by=record.get("res_by"),
        plan=[
            pb.EscalationLevel(
                level=i + 1, at_seconds=lv.at, targets=list(lv.targets), fired=i < fired
            )
            for i, lv in enumerate(plan)
        ],
    )
    data: Any = json.loads(record.get("data") or "{}")
    if isinstance(data, dict) and isinstance(data.get("description"), str):
        msg.description = data["description"]
    if record.get("due_at"):
        msg.next_escalation_at.CopyFrom(_ts(record.int("due_at")))
    if record.get("ack_at"):
        msg.acknowledged_at.CopyFrom(_ts(record.int("ack_at")))
    if record.get("res_at"):
        msg.resolved_at.CopyFrom(_ts(record.int("res_at")))
    if timeline:
        for item in record.timeline:
            msg.timeline.append(
                pb.TimelineEntry(
                    event=str(item.get("event", "")),
                    at=_ts(int(item.get("at", 0))),
                    by=str(item.get("by", "")),
                    level=int(item.get("level", 0)),
                    targets=[str(t) for t in item.get("targets", [])],
                )
            )
    return msg


@asynccontextmanager
async def _status(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
    try:
        yield
    except InvalidAlert as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    except AlertNotFound as exc:
        await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
    except AlertClosed as exc:
        await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
    except TooManyAlerts as exc:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
    except EscalationError as exc:
        await context.abort(grpc.StatusCode.ABORTED, str(exc))
    except (BusUnavailable, BusBusy):
        await context.abort(grpc.StatusCode.UNAVAILABLE, "redis unavailable")


def _caller_id() -> str:
    """The verified caller's principal id (the interceptor ran before every handler)."""
    caller = current_caller()
    return caller.id if caller is not None else "grpc"


class EscalationServicer(pb_grpc.EscalationServiceServicer):
    def __init__(self, alerts: AlertService) -> None:
        self.alerts = alerts

    async def Trigger(
        self, request: pb.TriggerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TriggerResponse:
        async with _status(context):
            data: dict[str, Any] = {
                "severity": request.severity,
                "title": request.title,
            }
            if request.alert_id:
                data["alert_id"] = request.alert_id
            for name in ("description", "agent_id", "hostname", "dedup_key", "policy"):
                value = getattr(request, name)
                if value:
                    data[name] = value
            if request.metric_json:
                if too_deep(request.metric_json):
                    raise InvalidAlert(
                        "json_too_deep", f"metric_json nested deeper than {MAX_JSON_DEPTH}"
                    )
                try:
                    metric = json.loads(request.metric_json)
                except ValueError:
                    raise InvalidAlert("invalid_metric", "metric_json is not JSON") from None
                if not isinstance(metric, dict):
                    raise InvalidAlert("invalid_metric", "metric_json must be an object")
                data["metric"] = metric
            if request.actions:
                data["actions"] = [
                    {"type": "escalate", "delay": a.delay_seconds, "target": a.target}
                    for a in request.actions
                ]
            record, outcome = await self.alerts.trigger(data, source="grpc", by=_caller_id())
            return pb.TriggerResponse(alert=alert_to_pb(record), created=outcome == "created")
        raise AssertionError("unreachable")

    async def Acknowledge(
        self, request: pb.AcknowledgeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.AcknowledgeResponse:
        async with _status(context):
            record, changed = await self.alerts.acknowledge(request.alert_id, request.by)
            return pb.AcknowledgeResponse(alert=alert_to_pb(record), changed=changed)
        raise AssertionError("unreachable")

    async def Resolve(
        self, request: pb.ResolveRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResolveResponse:
        async with _status(context):
            record, changed = await self.alerts.resolve(request.alert_id, request.by)
            return pb.ResolveResponse(alert=alert_to_pb(record), changed=changed)
        raise AssertionError("unreachable")

    async def Get(
        self, request: pb.GetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetResponse:
        async with _status(context):
            record = await self.alerts.get(request.alert_id)
            return pb.GetResponse(alert=alert_to_pb(record, timeline=True))
        raise AssertionError("unreachable")

    async def ListActive(
        self, request: pb.ListActiveRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListActiveResponse:
        async with _status(context):
            states = []
            for state in request.states:
                if state not in PB_TO_STATE:
                    raise InvalidAlert("invalid_filter", f"unknown state {state}")
                states.append(PB_TO_STATE[state])
            records, token = await self.alerts.list_active(
                severities=list(request.severities),
                states=states,
                target=request.target,
                limit=request.limit,
                page_token=request.page_token,
            )
            return pb.ListActiveResponse(
                alerts=[alert_to_pb(r) for r in records], next_page_token=token
            )
        raise AssertionError("unreachable")
