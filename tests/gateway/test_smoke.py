from __future__ import annotations

from tests.gateway.conftest import Stack, recv, recv_until, send


async def test_subscribe_and_receive(stack: Stack) -> None:
    """A subscribed client receives a message published through Redis, with offset and epoch."""
    ws = await stack.connect()
    await send(ws, {"type": "subscribe", "data": {"room": "system"}})
    ok = await recv(ws)
    assert ok["type"] == "subscribed" and ok["room"] == "system"
    sent = await stack.publish("system", "metrics_update", {"cpu": 1})
    msg = await recv_until(ws, lambda m: m["type"] == "metrics_update")
    assert msg["id"] == sent.id and msg["data"] == {"cpu": 1}
    assert msg["metadata"]["offset"] == sent.offset and msg["metadata"]["epoch"] == sent.epoch
