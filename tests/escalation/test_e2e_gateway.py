"""End to end through the gateway (real auth, roomauthz, uvicorn, WebSocket client): a
client subscribed to ``alerts`` and its team room sees the trigger and the escalation, and
acknowledges/resolves from the browser side (gateway -> escalation ``Acknowledge``/``Resolve``
with the user's principal id)."""

from __future__ import annotations

import asyncio

from roomgate.escalation.v1 import escalation_pb2 as pb

from tests.escalation.conftest import GATEWAY_KEY, SERVICE_KEYS
from tests.gateway.conftest import recv_until, running_stack, send


async def _subscribe(ws, *rooms: str) -> None:
    for room in rooms:
        await send(ws, {"type": "subscribe", "data": {"room": room}})
        ok = await recv_until(ws, lambda m, r=room: m["type"] == "subscribed" and m["room"] == r)
        assert ok["room"] == room


def _trigger() -> pb.TriggerRequest:
    return pb.TriggerRequest(
        alert_id="789",
        severity="critical",
        title="High CPU usage detected",
        actions=[pb.EscalateAction(delay_seconds=0.1, target="ops-team")],
    )


def _is(type_: str, room: str):
    return lambda m: m["type"] == type_ and m.get("room") == room


async def test_websocket_client_sees_trigger_escalation_and_ack(
    make_replica, stub_for, redis_url, monkeypatch
) -> None:
    """Trigger -> alert_escalated in alerts and team-7 -> Acknowledge, all seen by a client."""
    monkeypatch.setenv("ROOMGATE_SERVICE_KEYS", SERVICE_KEYS)  # the stack's auth knows the key
    replica = await make_replica()
    stub = stub_for(replica.port)
    async with running_stack(
        redis_url, escalation_addr=f"127.0.0.1:{replica.port}", escalation_api_key=GATEWAY_KEY
    ) as stack:
        ws = await stack.connect(stack.token("42", teams=("7",)))
        await _subscribe(ws, "alerts", "team-7")
        await stub.Trigger(_trigger())
        trig = await recv_until(ws, _is("alert_triggered", "alerts"))
        assert trig["data"]["alert_id"] == "789"
        esc = await recv_until(ws, _is("alert_escalated", "alerts"))
        esc_team = await recv_until(ws, _is("alert_escalated", "team-7"))
        assert esc["id"] == esc_team["id"] == "789:esc:1"
        assert esc_team["data"]["target"] == "team-7"
        await stub.Acknowledge(pb.AcknowledgeRequest(alert_id="789", by="42"))
        ack = await recv_until(ws, _is("alert_acknowledged", "team-7"))
        assert ack["data"]["by"] == "42"


async def test_client_acknowledges_through_the_gateway(
    make_replica, stub_for, redis_url, monkeypatch
) -> None:
    """A user's alert_acknowledged goes through the gateway to Acknowledge(by=principal id):
    the escalation stops, the canonical event reaches the clients, a repeat changes nothing."""
    monkeypatch.setenv("ROOMGATE_SERVICE_KEYS", SERVICE_KEYS)  # the stack's auth knows the key
    replica = await make_replica()
    stub = stub_for(replica.port)
    async with running_stack(
        redis_url, escalation_addr=f"127.0.0.1:{replica.port}", escalation_api_key=GATEWAY_KEY
    ) as stack:
        perms = ("view_system", "ack_alerts", "resolve_alerts")
        ws = await stack.connect(stack.token("42", teams=("7",), perms=perms))
        await _subscribe(ws, "alerts", "team-7")
        trigger = _trigger()
        trigger.actions.append(pb.EscalateAction(delay_seconds=1.0, target="team-8"))
        await stub.Trigger(trigger)
        await recv_until(ws, _is("alert_escalated", "team-7"))
        await send(
            ws, {"type": "alert_acknowledged", "room": "alerts", "data": {"alert_id": "789"}}
        )
        ack = await recv_until(
            ws, lambda m: m["type"] == "alert_acknowledged" and m.get("sender") == "escalation"
        )
        assert ack["id"] == "789:ack"
        assert ack["data"]["by"] == "42"
        got = await stub.Get(pb.GetRequest(alert_id="789"))
        assert got.alert.state == pb.ALERT_STATE_ACKNOWLEDGED
        assert got.alert.acknowledged_by == "42"
        # A repeat is idempotent: the gateway's ack says changed=false.
        await send(
            ws,
            {
                "id": "c-2",
                "type": "alert_acknowledged",
                "room": "alerts",
                "data": {"alert_id": "789"},
                "requiresAck": True,
            },
        )
        again = await recv_until(ws, lambda m: m["type"] == "ack")
        assert again["data"] == {"alert_id": "789", "changed": False}
        # The second level (due after 1 s) never fires.
        await asyncio.sleep(1.3)
        got = await stub.Get(pb.GetRequest(alert_id="789"))
        assert got.alert.levels_fired == 1
        await send(ws, {"type": "alert_resolved", "room": "alerts", "data": {"alert_id": "789"}})
        res = await recv_until(
            ws, lambda m: m["type"] == "alert_resolved" and m.get("sender") == "escalation"
        )
        assert res["data"]["by"] == "42"
        await send(ws, {"type": "alert_resolved", "room": "alerts", "data": {"alert_id": "nope"}})
        err = await recv_until(ws, lambda m: m["type"] == "error")
        assert err["data"]["code"] == "not_found"
