"""Finding 4: every inbound message — pings, acks, and what is inside `batch` and
`compressed` — counts against a per-connection budget; a flood is refused, then closed
4030, and the read loop yields so that other clients are still answered."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import statistics
import sys
import time
import zlib
from typing import Any

import pytest
from roomgate_gateway.budget import InboundBudget, InboundBudgetPolicy, Verdict
from websockets.exceptions import ConnectionClosed

from tests.gateway.conftest import Stack, recv

pytestmark = pytest.mark.timeout(60)

POLICY = InboundBudgetPolicy(rate=10, burst=20, ping_cost=0.125, yield_every=4)


def test_budget_charges_pings_lightly_refuses_then_closes() -> None:
    """20 messages pass, the 21st is refused (answered once), 20 more close; pings cost an eighth."""
    budget = InboundBudget(POLICY, now=0.0)
    assert [budget.take(POLICY, 0.0) for _ in range(20)] == [Verdict.ALLOW] * 20
    assert budget.take(POLICY, 0.0) is Verdict.REFUSE_FIRST
    assert budget.take(POLICY, 0.0) is Verdict.REFUSE
    verdicts = [budget.take(POLICY, 0.0) for _ in range(19)]
    assert verdicts[-1] is Verdict.CLOSE
    pings = InboundBudget(POLICY, now=0.0)
    assert all(pings.take(POLICY, 0.0, ping=True) is Verdict.ALLOW for _ in range(160))
    assert pings.take(POLICY, 0.0, ping=True) is not Verdict.ALLOW
    assert pings.take(POLICY, 10.0) is Verdict.ALLOW  # refilled
    assert [pings.tick(POLICY) for _ in range(8)] == [False, False, False, True] * 2


def compressed_pings(n: int) -> str:
    batch = json.dumps({"type": "batch", "messages": [{"type": "ping"}] * n})
    packed = base64.b64encode(zlib.compress(batch.encode())).decode()
    return json.dumps({"type": "compressed", "data": packed})


async def ping_series(ws: Any, count: int, interval: float) -> list[float]:
    """Round trips of ``count`` pings sent every ``interval`` s (not waiting for pongs)."""

    async def pinger() -> None:
        for _ in range(count):
            await ws.send(json.dumps({"type": "ping", "timestamp": time.perf_counter()}))
            await asyncio.sleep(interval)

    sending = asyncio.create_task(pinger())
    rtts = []
    while len(rtts) < count:
        msg = await recv(ws, timeout=60)
        if msg["type"] == "pong":
            rtts.append(time.perf_counter() - msg["data"]["timestamp"])
    await sending
    return rtts


async def ping_rtts(ws: Any, count: int) -> list[float]:
    rtts = []
    for _ in range(count):
        start = time.perf_counter()
        await ws.send('{"type":"ping"}')
        while (await recv(ws, timeout=20))["type"] != "pong":
            pass
        rtts.append(time.perf_counter() - start)
    return rtts


# The flooder runs in a process of its own (as an attacker would), so the other client's
# latency measures the gateway, not the flooding client sharing this event loop.
FLOODER = """
import asyncio, sys, time, contextlib
import websockets
from websockets.exceptions import ConnectionClosed

async def main(url, frame):
    async with websockets.connect(url, max_size=None) as ws:
        async def drain():
            with contextlib.suppress(ConnectionClosed):
                async for _ in ws:
                    pass
        await ws.recv()  # welcome
        reader = asyncio.create_task(drain())
        print("ready", flush=True)
        sent, deadline = 0, time.monotonic() + 5
        with contextlib.suppress(ConnectionClosed):
            while time.monotonic() < deadline:
                await ws.send(frame)
                sent += 1
                if sent % 20 == 0:
                    await asyncio.sleep(0)
        with contextlib.suppress(TimeoutError):  # not closed: say so (None)
            await asyncio.wait_for(asyncio.shield(reader), 5)
        print(sent, ws.close_code, flush=True)
        reader.cancel()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_a_compressed_ping_flood_is_closed_and_others_are_still_answered(
    stack: Stack, capsys: Any
) -> None:
    """`compressed` batches of 50 pings from another process: the flooder is closed 4030; another client's pings are answered meanwhile."""
    other = await stack.connect(stack.token("1"))
    quiet = statistics.median(await ping_rtts(other, 20))
    flooder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FLOODER,
        f"{stack.url}?token={stack.token('2')}",
        compressed_pings(50),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert flooder.stdout is not None
        assert (await asyncio.wait_for(flooder.stdout.readline(), 20)).strip() == b"ready"
        during = await ping_series(other, 50, 0.05)  # over the flood's first 2.5 s
        out = await asyncio.wait_for(flooder.stdout.read(), 30)
        await asyncio.wait_for(flooder.wait(), 10)
    finally:
        if flooder.returncode is None:
            flooder.kill()
            await flooder.wait()
    sent, close_code = out.split()
    with capsys.disabled():
        print(
            f"\nping flood ({int(sent)} frames of 50 pings, close {close_code.decode()}): "
            f"other client's ping p50 {quiet * 1000:.2f} ms quiet, "
            f"{statistics.median(during) * 1000:.2f} ms during (p90 "
            f"{statistics.quantiles(during, n=10)[-1] * 1000:.1f} ms, max {max(during) * 1000:.1f} ms)"
        )
    assert close_code == b"4030"
    assert stack.gateway.metrics.drops.labels("inbound_over_budget")._value.get() > 0
    assert len(during) == 50


async def test_acks_count_against_the_budget(stack: Stack) -> None:
    """A flood of plain acks (exempt from the per-user rate) gets `rate_limited`, then close 4030."""
    flooder = await stack.connect(stack.token("2"))
    frame = json.dumps({"type": "ack", "ackId": "x"})
    seen: list[str] = []

    async def drain() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in flooder:
                seen.append(json.loads(raw)["data"].get("code", ""))

    draining = asyncio.create_task(drain())
    with contextlib.suppress(ConnectionClosed):
        for n in range(100_000):
            await flooder.send(frame)
            if n % 100 == 0:
                await asyncio.sleep(0)
    await asyncio.wait_for(flooder.wait_closed(), 10)
    await draining
    assert flooder.close_code == 4030
    assert seen == ["rate_limited"]


async def test_frames_before_the_token_count_against_the_budget(stack: Stack) -> None:
    """An unauthenticated client's frames (no token yet) are charged too: within the burst
    each is answered `not_authenticated`; beyond it they are dropped unanswered, and a
    flood is closed 4030 — it is never answered frame for frame."""
    import websockets

    burst = stack.settings.inbound_burst
    flooder = await websockets.connect(stack.url)  # no token: the auth phase
    frame = json.dumps({"type": "subscribe", "data": {"room": "system"}})
    answers: list[str] = []

    async def drain() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in flooder:
                answers.append(json.loads(raw)["data"].get("code", ""))

    draining = asyncio.create_task(drain())
    with contextlib.suppress(ConnectionClosed):
        for n in range(int(burst * 4)):
            await flooder.send(frame)
            if n % 100 == 0:
                await asyncio.sleep(0)
    await asyncio.wait_for(flooder.wait_closed(), 10)
    await draining
    assert flooder.close_code == 4030
    assert set(answers) == {"not_authenticated"}
    assert len(answers) < 2 * burst  # the burst (and its refill), the rest dropped unanswered
    assert stack.gateway.metrics.connects.labels("rate_limited")._value.get() == 1
