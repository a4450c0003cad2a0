"""Publish: server CPU per HTTP publish call, the gateway against Centrifugo, same run.

A backend POSTs events one after the other on ``--publishers`` kept-alive connections for
``--duration`` seconds into a room nobody is subscribed to, so the figure is the publish path
alone (authenticate the caller, authorise the room, append to history, publish to Redis),
not the fan-out:

- the gateway: ``POST /api/v1/publish`` with a service token (``publish`` permission); its
  CPU is split into the gateway process and the auth + roomauthz services it calls;
- Centrifugo v6 (``make bench-tools``): ``POST /api/publish`` with its API key, Redis engine,
  history on for the channel (the same settings as ``roomgate bench fanout``);
- the naive Starlette server of ``roomgate bench fanout`` (``starlette_server``): the same
  URLs, but it only parses the body and PUBLISHes it (no auth, no history), on uvicorn with
  httptools and redis-py as the gateway: the floor of any HTTP publish in Python here.

With ``--batch N`` each call carries N events: ``POST /api/v1/publish/batch`` against
Centrifugo's ``POST /api/batch`` of N publish commands; the figures are then per event.

Prints calls/s, p50/p99 latency and server CPU per call (ms) for each, and the ratio the
issue-12 target compares (gateway CPU per publish <= Centrifugo's). Nothing is asserted.
Everything started is stopped at the end, also on errors or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jwt

from roomgate_tools.bench import _procstat as procstat
from roomgate_tools.bench._fanout.centrifugo import CentrifugoTarget, HttpApiPublisher
from roomgate_tools.bench._fanout.targets import GatewayTarget, StarletteTarget, stop_all_started
from roomgate_tools.bench._http import HttpError, KeepAliveClient
from roomgate_tools.procs import RedisProcess

ROOM = "system"  # a room nobody subscribes to in this benchmark
TARGET_CPU_RATIO = 1.0  # gateway CPU per publish / Centrifugo's, at most (issue 12)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per server (5)")
    parser.add_argument(
        "--publishers", type=int, default=4, help="concurrent kept-alive connections (4)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=("gateway", "centrifugo", "starlette"),
        help="one server only (repeatable; default: all three)",
    )
    parser.add_argument(
        "--batch", type=int, default=1, help="events per call (1: the single-event APIs)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


@dataclass
class Figures:
    name: str
    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu_s: float  # the server process
    peers_cpu_s: float  # the services it calls per publish (gateway: auth + roomauthz)
    peers: int = 0  # how many such processes were measured

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * (self.server_cpu_s + self.peers_cpu_s) / self.calls if self.calls else 0.0


def service_token_headers(target: GatewayTarget) -> dict[str, str]:
    """The ``Authorization`` of a backend allowed to publish, signed for ``target``'s auth."""
    now = int(time.time())
    claims = {
        "iss": target.issuer,
        "aud": target.audience,
        "sub": "bench-backend",
        "kind": "service",
        "perms": ["publish"],
        "iat": now,
        "exp": now + 3600,
        "jti": secrets.token_urlsafe(16),
    }
    return {"Authorization": f"Bearer {jwt.encode(claims, target.secret, algorithm='HS256')}"}


class RoomgatePublisher:
    """``POST /api/v1/publish`` and ``/api/v1/publish/batch``: the gateway's API (with a
    service token) or the naive server's copy of its URLs (no headers)."""

    def __init__(self, target: GatewayTarget | StarletteTarget, headers: dict[str, str]) -> None:
        self._http = KeepAliveClient(target.host, target.port)
        self._headers = headers

    async def publish_data(self, data: dict[str, object]) -> None:
        body = json.dumps(
            {"room": ROOM, "type": "metrics_update", "data": data}, separators=(",", ":")
        ).encode()
        status, payload = await self._http.post("/api/v1/publish", body, self._headers)
        if status != 202:
            raise HttpError(f"publish failed: {status} {payload[:200]!r}")

    async def publish_batch(self, items: list[dict[str, object]]) -> None:
        events = [{"room": ROOM, "type": "metrics_update", "data": data} for data in items]
        body = json.dumps({"events": events}, separators=(",", ":")).encode()
        status, payload = await self._http.post("/api/v1/publish/batch", body, self._headers)
        if status != 202:
            raise HttpError(f"batch publish failed: {status} {payload[:200]!r}")

    async def close(self) -> None:
        await self._http.close()


Publisher = RoomgatePublisher | HttpApiPublisher
Target = GatewayTarget | CentrifugoTarget | StarletteTarget


def _cpu(pids: list[int]) -> float:
    return sum(procstat.tree_cpu_split(pid)[0] for pid in pids)


async def _measure(
    name: str,
    publishers: list[Publisher],
    server: int,
    peers: list[int],
    duration: float,
    batch: int = 1,
) -> Figures:
    latencies: list[float] = []
    calls = 0
    loop = asyncio.get_running_loop()

    async def one(publisher: Publisher, until: float, record: bool) -> None:
        nonlocal calls
        seq = 0
        while loop.time() < until:
            started = time.perf_counter()
            if batch == 1:
                await publisher.publish_data({"seq": seq})
            else:
                await publisher.publish_batch([{"seq": seq + n} for n in range(batch)])
            seq += batch
            if record:
                latencies.append(time.perf_counter() - started)
                calls += batch  # events

    warmup = loop.time() + 0.5
    await asyncio.gather(*(one(p, warmup, False) for p in publishers))
    before = (_cpu([server]), _cpu(peers))
    started = time.perf_counter()
    until = loop.time() + duration
    await asyncio.gather(*(one(p, until, True) for p in publishers))
    seconds = time.perf_counter() - started
    after = (_cpu([server]), _cpu(peers))
    latencies.sort()
    return Figures(
        name=name,
        calls=calls,
        seconds=seconds,
        p50_ms=procstat.percentile(latencies, 0.50) * 1000,
        p99_ms=procstat.percentile(latencies, 0.99) * 1000,
        server_cpu_s=after[0] - before[0],
        peers_cpu_s=after[1] - before[1],
        peers=len(peers),
    )


def _pids(target: Target) -> tuple[int, list[int]]:
    peers = [
        p.proc.pid
        for p in target.processes
        if p.proc is not None and p.proc.pid != target.pid and p.running
    ]
    return target.pid, peers


async def _run_one(target: Target, args: argparse.Namespace, redis_url: str, work: Path) -> Figures:
    await asyncio.to_thread(target.start, work, redis_url, 1)
    publishers: list[Publisher] = []
    try:
        for _ in range(args.publishers):
            if isinstance(target, CentrifugoTarget):
                publishers.append(await target.publisher(redis_url))
            elif isinstance(target, GatewayTarget):
                publishers.append(RoomgatePublisher(target, service_token_headers(target)))
            else:
                publishers.append(RoomgatePublisher(target, {}))
        server, peers = _pids(target)
        return await _measure(
            target.name, publishers, server, peers, args.duration, max(1, args.batch)
        )
    finally:
        for publisher in publishers:
            await publisher.close()
        await asyncio.to_thread(target.stop)


async def _main(args: argparse.Namespace) -> list[Figures]:
    work = Path(tempfile.mkdtemp(prefix="roomgate-bench-publish-"))
    redis = RedisProcess(work / "redis", aof=False)
    try:
        await asyncio.to_thread(redis.start)
        figures = []
        for name in args.only or ("gateway", "centrifugo", "starlette"):
            target: Target
            if name == "gateway":
                target = GatewayTarget()
            elif name == "centrifugo":
                target = CentrifugoTarget()
            else:
                target = StarletteTarget()
            figures.append(await _run_one(target, args, redis.url, work))
        return figures
    finally:
        stop_all_started()
        await asyncio.to_thread(redis.stop)
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    try:
        figures = asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 130
    if args.json:
        rows = [
            {**asdict(f), "calls_per_s": f.calls_per_s, "cpu_ms_per_call": f.cpu_ms_per_call}
            for f in figures
        ]
        print(json.dumps(rows, indent=2))
        return 0
    per = "event" if args.batch > 1 else "call"
    batched = f", {args.batch} events per call (per event; latency per call)"
    print(
        f"HTTP publish: {args.publishers} kept-alive publishers, {args.duration:g} s per server, "
        "into a room with no subscriber" + (batched if args.batch > 1 else "")
    )
    header = (
        f"{'server':<11} {per + 's/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'server CPU ms/' + per:>19} {'+ peers':>8} {'total':>7}"
    )
    print(header)
    print("-" * len(header))
    for f in figures:
        server = 1000 * f.server_cpu_s / f.calls if f.calls else 0.0
        peers = 1000 * f.peers_cpu_s / f.calls if f.calls else 0.0
        print(
            f"{f.name:<11} {f.calls_per_s:>8.0f} {f.p50_ms:>7.2f} {f.p99_ms:>7.2f} "
            f"{server:>19.3f} {peers:>8.3f} {f.cpu_ms_per_call:>7.3f}"
        )
    by_name = {f.name: f for f in figures}
    if "gateway" in by_name and "centrifugo" in by_name and by_name["centrifugo"].calls:
        ratio = by_name["gateway"].cpu_ms_per_call / by_name["centrifugo"].cpu_ms_per_call
        verdict = "PASS" if ratio <= TARGET_CPU_RATIO else "FAIL"
        print(
            f"{verdict}  CPU per publish, gateway (+ auth, roomauthz) / centrifugo: {ratio:.2f} "
            f"(target <= {TARGET_CPU_RATIO:g})"
        )
    if "starlette" in by_name and "centrifugo" in by_name and by_name["centrifugo"].calls:
        floor = by_name["starlette"].cpu_ms_per_call / by_name["centrifugo"].cpu_ms_per_call
        print(
            f"      the Python floor (naive Starlette: parse + PUBLISH, no auth) / centrifugo: "
            f"{floor:.2f}"
        )
    return 0
