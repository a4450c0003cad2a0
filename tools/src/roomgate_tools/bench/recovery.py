"""Recovery and history cost: replay N missed messages to a reconnecting client, and what the
history append costs the publish path and the fan-out, history on vs off in one run.

    roomgate bench recovery [--missed 10000] [--clients 100] [--duration 4]

It starts a private local stack (redis-server, auth, roomauthz, gateways; see
roomgate_tools.stack) on free ports, talks to one gateway directly, and stops everything
at the end. Figures only; targets (issue 4) are printed as PASS/FAIL, never asserted:
replaying 10,000 missed messages < 1 s; history append < 10 % of fan-out throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

# task-3 and task-4 keep no history: the "off" side of the comparison.
HISTORY = "task-3=0:0,task-4=0:0,*=50000:86400"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--missed", type=int, default=10_000, help="messages to replay (10000)")
    parser.add_argument("--replays", type=int, default=3, help="replay measurements (3)")
    parser.add_argument("--clients", type=int, default=100, help="fan-out clients (100)")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per fan-out phase")
    parser.add_argument("--rounds", type=int, default=4, help="on/off rounds, alternating (4)")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_main(args))


def _flatten(frame: dict[str, Any]) -> list[dict[str, Any]]:
    return list(frame["messages"]) if frame["type"] == "batch" else [frame]


async def _connect(url: str) -> websockets.ClientConnection:
    ws = await websockets.connect(url, max_size=None, open_timeout=30)
    while json.loads(await ws.recv())["type"] != "welcome":
        pass
    return ws


async def _subscribe(
    ws: websockets.ClientConnection, room: str, since: dict[str, Any] | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {"room": room}
    if since is not None:
        data["since"] = since
    await ws.send(json.dumps({"type": "subscribe", "data": data}))
    while True:
        frame: dict[str, Any] = json.loads(await ws.recv())
        if frame["type"] == "subscribed" and frame.get("room") == room:
            return frame
        if frame["type"] == "error":
            raise RuntimeError(f"subscribe refused: {frame['data']}")


async def _replay(url: str, publisher: Any, missed: int, replays: int) -> list[float]:
    first = await publisher.publish("system", "metrics_update", {"n": 0})
    for i in range(1, missed + 1):
        await publisher.publish("system", "metrics_update", {"n": i, "pad": "x" * 100})
    times = []
    for _ in range(replays):
        ws = await _connect(url)
        start = time.perf_counter()
        answer = await _subscribe(ws, "system", {"offset": first.offset, "epoch": first.epoch})
        if not answer["data"].get("recovered"):
            raise RuntimeError(f"not recovered: {answer['data']}")
        received = 0
        while received < missed:  # bounded: a lost message fails the run, never hangs it
            frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
            received += sum(1 for m in _flatten(frame) if m.get("room") == "system")
        times.append(time.perf_counter() - start)
        await ws.close()
    return times


async def _publish_rate(publisher: Any, room: str, seconds: float, concurrency: int = 8) -> float:
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await publisher.publish(room, "metrics_update", {"n": count})
            count += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - start)


async def _fanout(url_for: Any, publisher: Any, room: str, clients: int, seconds: float) -> float:
    """Deliveries/s to ``clients`` subscribers while publishing as fast as they keep up."""
    sockets = [await _connect(url_for(i)) for i in range(clients)]
    for ws in sockets:
        await _subscribe(ws, room)
    counts = [0] * clients
    stop = asyncio.Event()

    async def reader(i: int, ws: websockets.ClientConnection) -> None:
        while not stop.is_set():
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
            except TimeoutError:
                continue
            except websockets.ConnectionClosed as exc:
                # Without this client the publishers would wait for it forever.
                stop.set()
                raise RuntimeError(f"fan-out client {i} closed: {exc}") from exc
            counts[i] += sum(1 for m in _flatten(frame) if m.get("room") == room)

    readers = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(sockets)]
    published = 0
    start = time.perf_counter()

    async def publish_worker() -> None:
        # Keep at most ~50 messages in flight per client: the gateway, not a queue, is
        # what bounds the rate.
        nonlocal published
        while time.perf_counter() - start < seconds and not stop.is_set():
            if published - min(counts) > 50:
                await asyncio.sleep(0.001)
                continue
            published += 1
            await publisher.publish(room, "metrics_update", {"n": published})

    await asyncio.gather(*(publish_worker() for _ in range(8)))
    elapsed = time.perf_counter() - start
    delivered = sum(counts)
    failed = stop.is_set()
    stop.set()
    results = await asyncio.gather(*readers, return_exceptions=True)
    if failed:
        raise next(r for r in results if isinstance(r, BaseException))
    for ws in sockets:
        await ws.close()
    return delivered / elapsed


async def _main(args: argparse.Namespace) -> int:
    from roomgate_common.publisher import Publisher
    from roomgate_common.redis_adapter import connect

    from roomgate_tools.stack import LocalStack, StackConfig

    state = Path(tempfile.mkdtemp(prefix="roomgate-bench-recovery-"))
    config = StackConfig(
        state_dir=state,
        escalation=False,
        log_level="WARNING",
        aof=False,
        extra_env={"ROOMGATE_HISTORY": HISTORY},
        gateway_env={
            "ROOMGATE_MAX_CONNECTIONS_PER_IP": "100000",
            "ROOMGATE_MAX_CONNECTIONS_PER_USER": "100000",
            "ROOMGATE_MESSAGES_PER_USER_PER_MINUTE": "100000",
            "ROOMGATE_OUTBOUND_QUEUE_SIZE": "100000",
        },
    )
    stack = LocalStack(config)
    print("starting the local stack ...", flush=True)
    stack.start()
    try:
        gateway = next(iter(stack.gateway_http.values())).replace("http://", "ws://") + "/ws"
        tokens = [
            stack.token(str(i + 1), perms=("view_system", "view_tasks"))
            for i in range(args.clients + 5)
        ]

        def url_for(i: int) -> str:
            return f"{gateway}?token={tokens[i]}"

        redis = connect(stack.redis_url)
        publisher = Publisher(redis, sender="bench", history=HISTORY)
        print(
            f"publishing {args.missed} messages, then replaying them {args.replays}x ...",
            flush=True,
        )
        replay = await _replay(url_for(args.clients), publisher, args.missed, args.replays)

        rates_on: list[float] = []
        rates_off: list[float] = []
        fan_on: list[float] = []
        fan_off: list[float] = []
        for round_ in range(args.rounds):  # alternate the order: no warm-up bias
            order = [(True, "task-1", "task-2"), (False, "task-3", "task-4")]
            for on, rate_room, fan_room in order if round_ % 2 == 0 else order[::-1]:
                rate = await _publish_rate(publisher, rate_room, 2.0)
                fan = await _fanout(url_for, publisher, fan_room, args.clients, args.duration)
                (rates_on if on else rates_off).append(rate)
                (fan_on if on else fan_off).append(fan)
        await redis.aclose()
    finally:
        stack.stop()

    best = min(replay)
    pub_cost = 1 - statistics.median(rates_on) / statistics.median(rates_off)
    fan_cost = 1 - statistics.median(fan_on) / statistics.median(fan_off)
    print()
    print(
        f"replay of {args.missed} missed messages: best {best * 1000:.0f} ms, "
        f"median {statistics.median(replay) * 1000:.0f} ms ({args.missed / best:,.0f} msg/s)"
    )
    print(
        f"publish path (8 concurrent publishers): history on {statistics.median(rates_on):,.0f}/s, "
        f"off {statistics.median(rates_off):,.0f}/s -> history costs {pub_cost:.1%}"
    )
    fan_with, fan_without = statistics.median(fan_on), statistics.median(fan_off)
    print(
        f"fan-out to {args.clients} clients: history on {fan_with:,.0f} deliveries/s, "
        f"off {fan_without:,.0f} deliveries/s -> history costs {fan_cost:.1%}"
    )
    print()
    print("targets (issue 4):")
    verdict = {True: "PASS", False: "FAIL"}
    print(f"  {verdict[best < 1.0]}  replay {args.missed} missed messages < 1 s: {best:.2f} s")
    print(
        f"  {verdict[fan_cost < 0.10]}  history append < 10% of fan-out throughput: {fan_cost:.1%}"
    )
    return 0
