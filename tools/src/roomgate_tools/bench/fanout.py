"""Fan-out: N clients in one room on ONE gateway process, events published through Redis.

Measures, for the gateway and, in the same run on the same workload, two baselines (a naive
Starlette + uvicorn loop of ``send_text`` and python-socketio with its Redis manager):

- connects/s (full protocol: TCP, upgrade, auth, welcome) and subscribes/s;
- server RSS per idle authenticated, subscribed connection (VmRSS after - before, / N);
- a rate phase (``--rate`` events/s into the room for ``--duration`` s): delivered/lost,
  p50/p99 publish->receive latency, deliveries per server CPU-second;
- a saturation phase (events published as fast as the server delivers them, at most
  ``--window`` events in flight per client): max deliveries/s and deliveries per server
  CPU-second, the figure the targets compare.

The clients (picows, uvloop) and the publisher run in this process; every server runs in
its own process on 127.0.0.1. Memory and connects are measured one server at a time; then
the servers, all kept running, take turns in the rate phase and in each saturation round,
so that a change of load on a shared machine hits them alike. Everything started is
stopped at the end, also on Ctrl-C, SIGTERM or errors. Targets are printed with PASS/FAIL,
never asserted. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from roomgate_tools.bench import _procstat as procstat
from roomgate_tools.bench._fanout._serve import raise_nofile_limit
from roomgate_tools.bench._fanout.centrifugo import CentrifugoTarget
from roomgate_tools.bench._fanout.ledger import DeliveryLedger, percentile_ms
from roomgate_tools.bench._fanout.loadgen import Fleet, wait_delivered
from roomgate_tools.bench._fanout.profile import Profile, Sampler, find_py_spy, summarize
from roomgate_tools.bench._fanout.targets import (
    TARGETS,
    BaseGatewayTarget,
    EventPublisher,
    Target,
    _BaselineTarget,
    stop_all_started,
    stop_on_exit,
)
from roomgate_tools.procs import RedisProcess

ORDER = ("gateway", "gateway-base", "centrifugo", "starlette", "socketio")
DEFAULT = ("gateway", "starlette", "socketio")  # centrifugo needs `make bench-tools` first
AnyTarget = Target | CentrifugoTarget

ALL_TARGETS: dict[str, type[AnyTarget]] = {
    **TARGETS,
    "centrifugo": CentrifugoTarget,
}
WARMUP_CLIENTS = 10
SERVER_CPUS = {0}  # with --pin: servers and Redis here, the load generator elsewhere
KIB = 1024

# The targets of issue 3 on a 2-core machine.
TARGET_VS_STARLETTE = 1.0  # deliveries per gateway CPU-second >= the naive Starlette loop
TARGET_VS_SOCKETIO = 6.0  # ... and >= 6x python-socketio
TARGET_RSS_PER_CONN = 24 * KIB
TARGET_P99_MS = 50.0
# The targets of issue 12 against Centrifugo, same run: (what, gateway / Centrifugo at least).
TARGET_VS_CENTRIFUGO = {
    "connects/s": 1.0,
    "rate-phase deliveries per server CPU-s": 1.5,
    "saturation deliveries per server CPU-s": 1.0,
}
TARGET_RSS_VS_CENTRIFUGO = 4.0  # Centrifugo's RSS per connection / the gateway's, at least


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=2000, help="connections (default 2000)")
    parser.add_argument(
        "--rate", type=float, default=10.0, help="events/s of the rate phase (default 10)"
    )
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds of each measured phase (default 5)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=ORDER,
        help="measure only this server (repeatable; default: gateway, starlette, socketio; "
        "centrifugo needs `make bench-tools`)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=10,
        help="saturation phase: most events in flight per client (default 10)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="saturation phases per server, the servers taking turns (default 2)",
    )
    parser.add_argument(
        "--connect-concurrency",
        type=int,
        default=100,
        help="connections opened at once (default 100)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin the servers (and Redis) to CPU 0 and the load generator to the other CPUs "
        "(for a quiet machine; on a shared one the scheduler does better without)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample each server with py-spy during the saturation phase and print where "
        "its CPU went (needs py-spy: pip install py-spy); keeps the work directory",
    )
    parser.add_argument(
        "--baseline-ws",
        default="auto",
        choices=["auto", "websockets", "websockets-sansio", "wsproto"],
        help="uvicorn WebSocket implementation of the two baselines (default auto: uvicorn's "
        "default, websockets-sansio in uvicorn 0.54, the one the gateway uses)",
    )
    parser.add_argument(
        "--base-gateway",
        type=Path,
        metavar="BIN_DIR",
        help="also measure the gateway of another checkout (its .venv/bin), as gateway-base, "
        "in the same run: a before/after of a change",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the work directory with the server logs"
    )


@dataclass
class Options:
    clients: int = 2000
    rate: float = 10.0
    duration: float = 5.0
    window: int = 10
    connect_concurrency: int = 100
    drain_timeout: float = 10.0
    saturation: bool = True
    rounds: int = 2  # saturation phases per server, taking turns with the other servers
    profile: bool = False
    baseline_ws: str = "auto"
    pin: bool = False  # servers on CPU 0, this process on the others


@dataclass
class PhaseResult:
    published: int
    expected: int
    delivered: int
    lost: int
    duplicates: int
    clients_complete: int
    seconds: float
    deliveries_per_s: float
    server_cpu_s: float
    server_system_s: float  # the part of server_cpu_s spent in the kernel (socket writes)
    deliveries_per_cpu_s: float | None
    client_cpu_s: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    stalled: bool = False


@dataclass
class TargetResult:
    name: str
    description: str
    clients: int
    connected: int = 0
    connect_s: float = 0.0
    connects_per_s: float = 0.0
    subscribe_s: float = 0.0
    rss_before: int = 0
    rss_idle: int = 0
    rss_per_conn: float = 0.0
    rate: PhaseResult | None = None
    saturation: PhaseResult | None = None  # the rounds below, added up
    saturation_rounds: list[PhaseResult] = field(default_factory=list)
    dropped: int = 0
    connect_retries: int = 0
    subscribe_retries: int = 0
    server_errors: dict[str, int] = field(default_factory=dict)  # error frames, by text
    profile: Profile | None = None
    profile_file: str = ""
    errors: list[str] = field(default_factory=list)  # what stopped the measurement


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _quiesce(pid: int, limit: float = 30.0) -> float:
    """Wait (at most ``limit`` s) until the server works off what an earlier phase left it:
    it used under 5% of a CPU over half a second. Returns the seconds waited."""
    started = time.perf_counter()
    before = procstat.tree_cpu_seconds(pid)
    while time.perf_counter() - started < limit:
        await asyncio.sleep(0.5)
        now = procstat.tree_cpu_seconds(pid)
        if now - before < 0.025:
            break
        before = now
    return time.perf_counter() - started


class _Meter:
    """Server CPU (user, system), this process's CPU and wall time over a measured window."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu = procstat.tree_cpu_split(pid)
        self.own = procstat.self_cpu_seconds()
        self.wall = time.perf_counter()

    def read(self) -> tuple[float, float, float, float]:
        """(seconds, server user CPU-s, server system CPU-s, own CPU-s) since creation."""
        total, system = procstat.tree_cpu_split(self.pid)
        # The total is ns-precise, the kernel share is in 10 ms ticks: never more than the total.
        total -= self.cpu[0]
        system = min(system - self.cpu[1], total)
        return (
            time.perf_counter() - self.wall,
            total - system,
            system,
            procstat.self_cpu_seconds() - self.own,
        )


def _phase(
    ledger: DeliveryLedger,
    published: int,
    meter: tuple[float, float, float, float],
    stalled: bool,
) -> tuple[PhaseResult, array[int]]:
    window = ledger.close(published)
    seconds, server_user, server_system, client_cpu = meter
    server_cpu = server_user + server_system
    phase = PhaseResult(
        published=published,
        expected=window.expected,
        delivered=window.delivered,
        lost=window.lost,
        duplicates=window.duplicates,
        clients_complete=window.clients_complete,
        seconds=seconds,
        deliveries_per_s=window.delivered / seconds if seconds > 0 else 0.0,
        server_cpu_s=server_cpu,
        server_system_s=server_system,
        deliveries_per_cpu_s=window.delivered / server_cpu if server_cpu > 0 else None,
        client_cpu_s=client_cpu,
        p50_ms=window.latency_ms(0.50),
        p99_ms=window.latency_ms(0.99),
        max_ms=window.latency_ms(1.0),
        stalled=stalled,
    )
    return phase, window.latencies_ns


def _merge(phases: list[PhaseResult], latencies: list[array[int]]) -> PhaseResult:
    """The saturation rounds as one phase: counts and CPU added up, latencies pooled."""
    pooled: array[int] = array("q")
    for values in latencies:
        pooled.extend(values)
    seconds = sum(p.seconds for p in phases)
    delivered = sum(p.delivered for p in phases)
    server_cpu = sum(p.server_cpu_s for p in phases)
    return PhaseResult(
        published=sum(p.published for p in phases),
        expected=sum(p.expected for p in phases),
        delivered=delivered,
        lost=sum(p.lost for p in phases),
        duplicates=sum(p.duplicates for p in phases),
        clients_complete=min(p.clients_complete for p in phases),
        seconds=seconds,
        deliveries_per_s=delivered / seconds if seconds > 0 else 0.0,
        server_cpu_s=server_cpu,
        server_system_s=sum(p.server_system_s for p in phases),
        deliveries_per_cpu_s=delivered / server_cpu if server_cpu > 0 else None,
        client_cpu_s=sum(p.client_cpu_s for p in phases),
        p50_ms=percentile_ms(pooled, 0.50),
        p99_ms=percentile_ms(pooled, 0.99),
        max_ms=percentile_ms(pooled, 1.0),
        stalled=any(p.stalled for p in phases),
    )


async def _rate_phase(
    fleet: Fleet, publisher: EventPublisher, pid: int, first_seq: int, options: Options
) -> tuple[PhaseResult, array[int]]:
    ledger = fleet.ledger
    count = max(1, round(options.rate * options.duration))
    ledger.open(first_seq, first_seq + count)
    meter = _Meter(pid)
    started = time.perf_counter()
    for k in range(count):
        delay = started + k / options.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await publisher.publish(first_seq + k)
    complete = await wait_delivered(ledger, count * len(fleet.clients), options.drain_timeout)
    return _phase(ledger, count, meter.read(), stalled=not complete)


async def _saturation_phase(
    fleet: Fleet, publisher: EventPublisher, pid: int, first_seq: int, options: Options
) -> tuple[PhaseResult, array[int]]:
    ledger = fleet.ledger
    clients = len(fleet.clients)
    ledger.open(first_seq, first_seq + 10**12)
    meter = _Meter(pid)
    deadline = time.perf_counter() + options.duration
    published = 0
    stalled = False
    while time.perf_counter() < deadline:
        behind = (published - options.window) * clients
        if (
            behind > 0
            and ledger.delivered < behind
            and not await wait_delivered(ledger, behind, options.drain_timeout)
        ):
            stalled = True
            break
        await publisher.publish(first_seq + published)
        published += 1
    if not stalled:
        stalled = not await wait_delivered(ledger, published * clients, options.drain_timeout)
    return _phase(ledger, published, meter.read(), stalled)


def _sampler(name: str, pid: int, options: Options, workdir: Path) -> Sampler | None:
    if not options.profile:
        return None
    py_spy = find_py_spy()
    if py_spy is None:
        raise RuntimeError("--profile needs py-spy (pip install py-spy)")
    return Sampler(py_spy, pid, options.duration, workdir / f"{name}-saturation.pyspy.txt")


class _Live:
    """A started server with its clients connected and subscribed."""

    def __init__(self, target: AnyTarget, options: Options) -> None:
        self.target = target
        self.result = TargetResult(target.name, target.description, options.clients)
        self.fleet: Fleet | None = None
        self.publisher: EventPublisher | None = None
        self.seq = 0
        self.latencies: list[array[int]] = []  # of the saturation rounds

    @property
    def ready(self) -> bool:
        return self.fleet is not None and not self.result.errors

    def fail(self, exc: BaseException) -> None:
        self.result.errors.append(f"{type(exc).__name__}: {exc}")
        tail = self.target.log_tail()
        if tail:
            self.result.errors.append(f"server log:\n{tail}")


async def _prepare(live: _Live, options: Options, redis_url: str, workdir: Path) -> None:
    """Start the server, read its memory before and after ``options.clients`` idle
    subscribed connections, and measure how fast they connect."""
    target, result = live.target, live.result
    _log(f"[{target.name}] starting the server")
    await asyncio.to_thread(target.start, workdir, redis_url, options.clients)
    pid = target.pid
    if options.pin:
        for process in target.processes:
            if process.proc is not None:
                procstat.pin_tree(process.proc.pid, SERVER_CPUS)
    wire = target.wire()
    live.publisher = await target.publisher(redis_url)
    # Warm-up clients make the server do every one-time thing (its first connection, gRPC
    # channels, the room's Redis subscription, code paths) before the memory baseline; they
    # stay connected until the baseline is read, then leave.
    warmup = Fleet(
        wire, DeliveryLedger(WARMUP_CLIENTS), target.host, target.port, first=options.clients
    )
    try:
        await warmup.connect(WARMUP_CLIENTS)
        await warmup.subscribe()
        for _ in range(3):
            await live.publisher.publish(-1)
        await asyncio.sleep(1.0)
        result.rss_before = procstat.tree_rss_bytes(pid)

        live.fleet = fleet = Fleet(wire, DeliveryLedger(options.clients), target.host, target.port)
        _log(f"[{target.name}] connecting {options.clients} clients")
        result.connect_s = await fleet.connect(
            options.clients, concurrency=options.connect_concurrency
        )
        result.connected = len(fleet.clients)
        result.connects_per_s = result.connected / result.connect_s
        result.subscribe_s = await fleet.subscribe()
        await asyncio.sleep(1.0)  # let the server settle before reading its memory
        result.rss_idle = procstat.tree_rss_bytes(pid)
        result.rss_per_conn = (result.rss_idle - result.rss_before) / options.clients
    finally:
        await warmup.close()
    # Events outside any window: first frames, caches, connections to Redis.
    for _ in range(5):
        await live.publisher.publish(live.seq)
        live.seq += 1
        await asyncio.sleep(0.05)


async def _close(live: _Live) -> None:
    fleet, result = live.fleet, live.result
    if fleet is not None:
        result.dropped = fleet.dropped
        result.connect_retries = fleet.connect_retries
        result.subscribe_retries = fleet.subscribe_retries
        result.server_errors = dict(fleet.errors)
        await fleet.close()
    if live.publisher is not None:
        await live.publisher.close()
    if live.target.server is not None and not live.target.running:
        result.errors.append(f"the server exited:\n{live.target.log_tail()}")
    await asyncio.to_thread(live.target.stop)


async def _quiesce_all(lives: list[_Live], name: str) -> None:
    started = time.perf_counter()
    for live in lives:
        if live.target.running:
            await _quiesce(live.target.pid)
    waited = time.perf_counter() - started
    if waited > 2:
        _log(f"[{name}]   (waited {waited:.1f}s for every server to go idle first)")


async def _run_rate(live: _Live, lives: list[_Live], options: Options) -> None:
    assert live.fleet is not None
    assert live.publisher is not None
    name = live.target.name
    await _quiesce_all(lives, name)
    _log(f"[{name}] rate phase: {options.rate:g} events/s for {options.duration:g}s")
    live.result.rate, _ = await _rate_phase(
        live.fleet, live.publisher, live.target.pid, live.seq, options
    )
    live.seq += live.result.rate.published


async def _run_saturation(
    live: _Live, lives: list[_Live], options: Options, round_: int, workdir: Path
) -> None:
    assert live.fleet is not None
    assert live.publisher is not None
    name = live.target.name
    await _quiesce_all(lives, name)
    _log(f"[{name}] saturation phase {round_ + 1}/{options.rounds} for {options.duration:g}s")
    sampler = _sampler(name, live.target.pid, options, workdir) if round_ == 0 else None
    phase, latencies = await _saturation_phase(
        live.fleet, live.publisher, live.target.pid, live.seq, options
    )
    live.seq += phase.published
    live.result.saturation_rounds.append(phase)
    live.latencies.append(latencies)
    if sampler is not None:
        problem = await asyncio.to_thread(sampler.stop)
        if problem:
            live.result.errors.append(f"py-spy: {problem}")
        else:
            live.result.profile_file = str(sampler.output)
            live.result.profile = summarize(sampler.output.read_text())


async def measure(
    targets: list[AnyTarget], options: Options, redis_url: str, workdir: Path
) -> dict[str, TargetResult]:
    """Measure each target: memory and connects one server at a time, then the rate phases
    and the saturation rounds taking turns across the servers (all kept running), so that a
    change of load on the machine hits every server alike. Everything started is stopped."""
    lives = [_Live(target, options) for target in targets]
    try:
        for live in lives:
            try:
                await _prepare(live, options, redis_url, workdir)
            except Exception as exc:
                live.fail(exc)
        ready = [live for live in lives if live.ready]
        # The load generator must cost less than the servers: no collector pauses while
        # measuring (everything allocated so far is frozen out of the collector's sight).
        gc.collect()
        gc.freeze()
        gc.disable()
        for live in ready:
            try:
                await _run_rate(live, ready, options)
            except Exception as exc:
                live.fail(exc)
        for round_ in range(options.rounds if options.saturation else 0):
            for live in [live for live in ready if live.ready]:
                try:
                    await _run_saturation(live, ready, options, round_, workdir)
                except Exception as exc:
                    live.fail(exc)
        for live in lives:
            if live.result.saturation_rounds:
                live.result.saturation = _merge(live.result.saturation_rounds, live.latencies)
    finally:
        gc.enable()
        gc.unfreeze()
        for live in lives:
            await _close(live)
    return {live.target.name: live.result for live in lives}


async def measure_target(
    target: AnyTarget, options: Options, redis_url: str, workdir: Path
) -> TargetResult:
    """Start ``target``, measure it and stop it."""
    return (await measure([target], options, redis_url, workdir))[target.name]


# -- report -------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _phase_lines(name: str, phase: PhaseResult | None, drain: float) -> list[str]:
    if phase is None:
        return [f"  {name}: not measured"]
    lines = [
        f"  {name}: {phase.published} events x clients = {phase.expected:,} expected, "
        f"{phase.delivered:,} delivered, {phase.lost:,} lost, "
        f"{phase.duplicates} duplicate/reordered, "
        f"{phase.clients_complete} clients got every event"
        + (
            f" (STALLED: lost = not received {drain:g}s after the last publish)"
            if phase.stalled
            else ""
        ),
        f"    {_num(phase.deliveries_per_s)} deliveries/s over {phase.seconds:.2f}s; "
        f"server {phase.server_cpu_s:.2f} CPU-s ({phase.server_system_s:.2f} in the kernel) -> "
        f"{_num(phase.deliveries_per_cpu_s)} "
        f"deliveries per server CPU-second; load generator {phase.client_cpu_s:.2f} CPU-s",
        f"    publish->receive latency p50 {_num(phase.p50_ms, 1)} ms, "
        f"p99 {_num(phase.p99_ms, 1)} ms, max {_num(phase.max_ms, 1)} ms",
    ]
    return lines


def _profile_lines(profile: Profile, path: str) -> list[str]:
    lines = [f"  profile of the saturation phase ({profile.samples} py-spy samples, {path}):"]
    lines.append("    self (the function itself):")
    lines += [f"      {share:6.1%}  {name}" for name, share in profile.self_share]
    lines.append("    inclusive (with what it called):")
    lines += [f"      {share:6.1%}  {name}" for name, share in profile.inclusive_share]
    return lines


def _dpc(result: TargetResult | None) -> float | None:
    if result is None or result.saturation is None:
        return None
    return result.saturation.deliveries_per_cpu_s


def comparisons(results: dict[str, TargetResult]) -> list[dict[str, Any]]:
    """The targets of issue 3 that the measured servers allow to check."""
    checks: list[dict[str, Any]] = []
    gateway = results.get("gateway")
    if gateway is None or (gateway.errors and gateway.saturation is None):
        return checks
    mine = _dpc(gateway)
    for name, factor in (("starlette", TARGET_VS_STARLETTE), ("socketio", TARGET_VS_SOCKETIO)):
        other = results.get(name)
        theirs = _dpc(other)
        if mine is not None and theirs and other is not None:
            ratio = mine / theirs
            by_round = [
                round(g.deliveries_per_cpu_s / o.deliveries_per_cpu_s, 2)
                for g, o in zip(gateway.saturation_rounds, other.saturation_rounds, strict=False)
                if g.deliveries_per_cpu_s and o.deliveries_per_cpu_s
            ]
            checks.append(
                {
                    "what": f"deliveries per gateway CPU-s / {name}",
                    "value": round(ratio, 2),
                    "by_round": by_round,
                    "target": f">= {factor:g}",
                    "pass": ratio >= factor,
                }
            )
    if gateway.connected:
        checks.append(
            {
                "what": "RSS per idle authenticated connection (KiB)",
                "value": round(gateway.rss_per_conn / KIB, 1),
                "target": f"<= {TARGET_RSS_PER_CONN // KIB}",
                "pass": gateway.rss_per_conn <= TARGET_RSS_PER_CONN,
            }
        )
    if gateway.rate is not None and gateway.rate.p99_ms is not None:
        checks.append(
            {
                "what": f"p99 latency at {gateway.clients} clients x rate phase (ms)",
                "value": round(gateway.rate.p99_ms, 1),
                "target": f"<= {TARGET_P99_MS:g}",
                "pass": gateway.rate.p99_ms <= TARGET_P99_MS and gateway.rate.lost == 0,
            }
        )
    checks += _centrifugo_comparisons(gateway, results.get("centrifugo"))
    return checks


def _ratio(mine: float | None, theirs: float | None) -> float | None:
    if mine is None or not theirs:
        return None
    return mine / theirs


def _centrifugo_comparisons(
    gateway: TargetResult, centrifugo: TargetResult | None
) -> list[dict[str, Any]]:
    """Issue 12: the gateway against Centrifugo on the same workload in the same run."""
    if centrifugo is None or not centrifugo.connected:
        return []
    checks: list[dict[str, Any]] = []
    rate = (gateway.rate, centrifugo.rate)
    pairs = {
        "connects/s": (gateway.connects_per_s, centrifugo.connects_per_s),
        "rate-phase deliveries per server CPU-s": (
            rate[0].deliveries_per_cpu_s if rate[0] else None,
            rate[1].deliveries_per_cpu_s if rate[1] else None,
        ),
        "saturation deliveries per server CPU-s": (_dpc(gateway), _dpc(centrifugo)),
    }
    for what, (mine, theirs) in pairs.items():
        ratio = _ratio(mine, theirs)
        if ratio is not None:
            target = TARGET_VS_CENTRIFUGO[what]
            checks.append(
                {
                    "what": f"{what}: gateway / centrifugo",
                    "value": round(ratio, 2),
                    "target": f">= {target:g}",
                    "pass": ratio >= target,
                }
            )
    memory = _ratio(centrifugo.rss_per_conn, gateway.rss_per_conn)
    if memory is not None:
        checks.append(
            {
                "what": "RSS per connection: centrifugo / gateway",
                "value": round(memory, 2),
                "target": f">= {TARGET_RSS_VS_CENTRIFUGO:g}",
                "pass": memory >= TARGET_RSS_VS_CENTRIFUGO,
            }
        )
    if rate[0] and rate[1] and rate[0].p99_ms is not None and rate[1].p99_ms is not None:
        checks.append(
            {
                "what": "rate-phase p99 (ms): gateway vs centrifugo",
                "value": f"{rate[0].p99_ms:.1f} vs {rate[1].p99_ms:.1f}",
                "target": "<=",
                "pass": rate[0].p99_ms <= rate[1].p99_ms,
            }
        )
    return checks


def render(results: dict[str, TargetResult], options: Options, load: str) -> str:
    pinning = "servers on CPU 0, load generator on the others" if options.pin else "no pinning"
    lines = [
        f"fan-out: {options.clients} clients in one room, rate phase {options.rate:g} events/s, "
        f"{options.duration:g}s per phase, {options.rounds} saturation rounds with at most "
        f"{options.window} events in flight per client, {pinning}, "
        f"baselines on uvicorn ws={options.baseline_ws}",
        f"load average before the run: {load}",
    ]
    for result in results.values():
        lines.append("")
        lines.append(f"== {result.name}: {result.description}")
        lines.append(
            f"  connect: {result.connected}/{result.clients} in {result.connect_s:.2f}s "
            f"= {_num(result.connects_per_s)} connects/s; subscribe all {result.subscribe_s:.2f}s"
        )
        lines.append(
            f"  memory: RSS {result.rss_before / KIB / KIB:.1f} MiB before, "
            f"{result.rss_idle / KIB / KIB:.1f} MiB with {result.connected} idle connections "
            f"= {result.rss_per_conn / KIB:.1f} KiB per connection"
        )
        lines += _phase_lines("rate", result.rate, options.drain_timeout)
        lines += _phase_lines("saturation", result.saturation, options.drain_timeout)
        if len(result.saturation_rounds) > 1:
            per_round = ", ".join(_num(r.deliveries_per_cpu_s) for r in result.saturation_rounds)
            lines.append(f"    deliveries per server CPU-second by round: {per_round}")
        if result.dropped:
            lines.append(f"  {result.dropped} connections dropped by the server")
        if result.connect_retries or result.subscribe_retries:
            lines.append(
                f"  retried: {result.connect_retries} connects, "
                f"{result.subscribe_retries} subscribes"
            )
        for text, count in result.server_errors.items():
            lines.append(f"  {count} x {text}")
        if result.profile is not None:
            lines += _profile_lines(result.profile, result.profile_file)
        for error in result.errors:
            lines.append("  ERROR " + error.replace("\n", "\n    "))
    checks = comparisons(results)
    if checks:
        lines.append("")
        lines.append("targets (issues 3 and 12):")
        for check in checks:
            rounds = check.get("by_round")
            lines.append(
                f"  {_verdict(check['pass'])}  {check['what']}: {check['value']} "
                f"(target {check['target']})"
                + (f"; by round: {', '.join(str(r) for r in rounds)}" if rounds else "")
            )
    return "\n".join(lines)


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


async def measure_all(names: list[str], options: Options, workdir: Path) -> dict[str, TargetResult]:
    """Start Redis and the named servers, measure them, stop everything (SIGTERM cancels
    the run like Ctrl-C does, so that the cleanup runs)."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    if main is not None:
        loop.add_signal_handler(signal.SIGTERM, main.cancel)
    redis = RedisProcess(workdir / "redis", aof=False)
    stop_on_exit(redis)
    await asyncio.to_thread(redis.start)
    if options.pin and redis.proc is not None:
        cpus = os.sched_getaffinity(0)
        procstat.pin_tree(redis.proc.pid, SERVER_CPUS)
        os.sched_setaffinity(0, cpus - SERVER_CPUS)
    try:
        targets: list[AnyTarget] = []
        for name in names:
            target = ALL_TARGETS[name]()
            if isinstance(target, _BaselineTarget):
                target.ws = options.baseline_ws
            targets.append(target)
        return await measure(targets, options, redis.url, workdir)
    finally:
        await asyncio.to_thread(redis.stop)


def run(args: argparse.Namespace) -> int:
    import uvloop

    raise_nofile_limit()  # inherited by every server this benchmark starts
    options = Options(
        clients=args.clients,
        rate=args.rate,
        duration=args.duration,
        window=args.window,
        rounds=max(1, args.rounds),
        connect_concurrency=args.connect_concurrency,
        profile=args.profile,
        baseline_ws=args.baseline_ws,
        pin=args.pin and len(os.sched_getaffinity(0)) >= 2,
    )
    names = [n for n in ORDER if n in (args.only or DEFAULT)]
    if args.base_gateway is not None:
        BaseGatewayTarget.bin_dir = args.base_gateway.resolve()
        if "gateway-base" not in names:
            names.insert(names.index("gateway") + 1 if "gateway" in names else 0, "gateway-base")
    load = _load()
    workdir = Path(tempfile.mkdtemp(prefix="roomgate-bench-fanout-"))
    failed = False
    try:
        try:
            results = uvloop.run(measure_all(names, options, workdir))
        except (KeyboardInterrupt, asyncio.CancelledError):
            failed = True
            _log("interrupted; everything the benchmark started has been stopped")
            return 130
        failed = any(r.errors for r in results.values())
        if args.json:
            document = {
                "options": asdict(options),
                "load_before": load,
                "results": {name: asdict(r) for name, r in results.items()},
                "targets": comparisons(results),
            }
            print(json.dumps(document, indent=2))
        else:
            print(render(results, options, load))
            print(f"load average after the run: {_load()}")
    finally:
        stop_all_started()  # anything a cancelled start left behind
        if args.keep_logs or args.profile or failed:
            _log(f"logs kept in {workdir}")
        else:
            with contextlib.suppress(OSError):
                shutil.rmtree(workdir)
    return 1 if failed else 0
