"""The protocol document's monitoring list, as the gateway exports it: connection duration,
reconnects that recovered (or not), bandwidth in/out, memory per connection (process
metrics) and Redis memory (INFO memory, read at each scrape)."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.conftest import Stack, recv_until, send


async def scrape(stack: Stack) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=stack.http) as http:
        text = (await http.get("/metrics")).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()) if k != "le")
            if "le" not in s.labels:
                samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


async def test_protocol_metrics(stack: Stack) -> None:
    """One reconnect recovered, one not; bytes both ways; a closed connection's duration."""
    sent = [await stack.publish("system", "metrics_update", {"n": i}) for i in range(3)]
    ws = await stack.connect()
    since = {"offset": sent[0].offset, "epoch": sent[0].epoch}
    await send(ws, {"type": "subscribe", "data": {"room": "system", "since": since}})
    await recv_until(ws, lambda m: m["type"] == "subscribed")
    await send(
        ws,
        {"type": "subscribe", "data": {"room": "tasks", "since": {"offset": 5, "epoch": "gone"}}},
    )
    await recv_until(ws, lambda m: m["type"] == "subscribed" and m["data"]["room"] == "tasks")
    other = await stack.connect()
    await other.close()
    for _ in range(100):
        m = await scrape(stack)
        if m.get("roomgate_gateway_connection_duration_seconds_count", 0) >= 1:
            break
        await asyncio.sleep(0.05)
    assert m['roomgate_gateway_recoveries_total{outcome="recovered"}'] == 1
    assert m['roomgate_gateway_recoveries_total{outcome="not_recovered"}'] == 1
    assert m["roomgate_gateway_connection_duration_seconds_count"] == 1
    assert m["roomgate_gateway_received_bytes_total"] > 100
    assert m["roomgate_gateway_sent_bytes_total"] > 300  # welcome, replayed messages, subscribed
    assert m['roomgate_gateway_redis_memory_bytes{field="used"}'] > 100_000
    assert 'roomgate_gateway_redis_memory_bytes{field="maxmemory"}' in m
    assert m["process_resident_memory_bytes"] > 10_000_000
    assert m["process_max_fds"] > 0
    assert m["roomgate_gateway_max_rooms"] == stack.settings.max_rooms_per_gateway
