"""Reconnect storm: N clients subscribed through the load balancer drop at once and come
back, with and without reconnect jitter; the time until every one is subscribed again and
has recovered what was published while it was away.

    roomgate bench storm [--clients 10000] [--jitter-ms 0 --jitter-ms 3000] [--missed 20]

It starts a private local stack (redis-server, auth, roomauthz, two gateways behind HAProxy
with cookie-less round robin; see roomgate_tools.stack) on free ports and stops it at the
end. The clients (picows, one process) connect through HAProxy, subscribe to ``system``
and get one message; then every connection is dropped at once, ``--missed`` messages are
published, and the same clients reconnect (each after a random delay in [0, jitter)) and
subscribe with ``since`` the offset they had reached. Figures per round: seconds until all
are subscribed and recovered, connects/s, errors and retries, lost and duplicated messages,
and the CPU seconds of the gateways, auth and roomauthz in the storm. The target of issue
12 (10,000 clients fully recovered in <= 5 s, no error) is printed as PASS/FAIL, never
asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from roomgate_tools.bench._fanout.ledger import DeliveryLedger
from roomgate_tools.bench._fanout.loadgen import Fleet, wait_delivered
from roomgate_tools.bench._fanout.wire import RoomgateSinceWire, RoomgateWire
from roomgate_tools.bench._procstat import tree_cpu_seconds

ROOM = RoomgateWire.room
TARGET_SECONDS = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=10_000, help="clients (10000)")
    parser.add_argument(
        "--jitter-ms",
        type=int,
        action="append",
        help="reconnect jitter of a round, ms (repeatable; default: 0 and 3000)",
    )
    parser.add_argument("--missed", type=int, default=20, help="messages published meanwhile")
    parser.add_argument("--concurrency", type=int, default=1000, help="connects in flight")
    parser.add_argument("--within", type=float, default=300.0, help="seconds a round may take")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")


class StormError(RuntimeError):
    """A round did not finish: clients not back, or messages not recovered, in time."""


@dataclass(frozen=True)
class StormRound:
    clients: int
    jitter_ms: int
    missed: int
    seconds: float  # drop -> every client subscribed and recovered
    connects_per_s: float
    not_recovered: int  # `subscribed` answers with recovered: false
    errors: int  # error frames received
    connect_retries: int
    subscribe_retries: int
    lost: int
    duplicates: int
    dropped: int  # connections the servers closed during the round
    cpu_s: dict[str, float]  # CPU seconds in the storm, per server process
    error_kinds: dict[str, int]  # the most frequent errors and retries, by text

    @property
    def passed(self) -> bool:
        clean = self.errors == self.lost == self.duplicates == self.not_recovered == 0
        return clean and self.seconds <= TARGET_SECONDS


def run(args: argparse.Namespace) -> int:
    rounds = asyncio.run(_main(args))
    _report(rounds)
    if args.json:
        print(json.dumps([asdict(r) for r in rounds], indent=2))
    return 0


def _servers(stack: Any) -> dict[str, int]:
    """The processes whose CPU a storm costs: the gateways, auth and roomauthz."""
    names = [*stack.config.gateway_ids, "auth", "roomauthz"]
    pids = {}
    for name in names:
        proc = stack.component(name).process.proc
        if proc is not None:
            pids[name] = proc.pid
    return pids


async def _main(args: argparse.Namespace) -> list[StormRound]:
    from roomgate_common.publisher import Publisher
    from roomgate_common.redis_adapter import connect

    from roomgate_tools.stack import LocalStack, StackConfig

    many = str(max(1000, args.clients * 4))
    config = StackConfig(
        state_dir=Path(tempfile.mkdtemp(prefix="roomgate-bench-storm-")),
        escalation=False,
        log_level="WARNING",
        aof=False,
        gateway_env={
            "ROOMGATE_MAX_CONNECTIONS_PER_IP": many,
            "ROOMGATE_MAX_CONNECTS_PER_PRINCIPAL_PER_MINUTE": "1000",
        },
    )
    stack = LocalStack(config)
    print("starting the local stack (two gateways behind HAProxy) ...", flush=True)
    stack.start()
    redis = connect(stack.redis_url)
    try:
        publisher = Publisher(redis, sender="bench")
        print(f"minting {args.clients} tokens ...", flush=True)
        tokens = [stack.token(str(i + 1), perms=("view_system",)) for i in range(args.clients)]
        rounds = []
        for jitter_ms in args.jitter_ms or [0, 3000]:
            result = await _round(stack, publisher, tokens, jitter_ms, args)
            print(_line(result), flush=True)
            rounds.append(result)
        return rounds
    finally:
        await redis.aclose()
        stack.stop()


def _top(errors: dict[str, int]) -> dict[str, int]:
    """The five most frequent error kinds."""
    return dict(sorted(errors.items(), key=lambda kv: -kv[1])[:5])


async def _publish(publisher: Any, seq: int) -> Any:
    return await publisher.publish(ROOM, "metrics_update", {"seq": seq, "t": time.time_ns()})


async def _round(
    stack: Any, publisher: Any, tokens: list[str], jitter_ms: int, args: argparse.Namespace
) -> StormRound:
    n, missed = len(tokens), args.missed
    lb = stack.ports.lb
    ledger = DeliveryLedger(n)
    before = Fleet(RoomgateWire(tokens), ledger, "127.0.0.1", lb)
    before.subscribe_on_welcome = True
    print(f"connecting {n} clients (jitter {jitter_ms} ms next) ...", flush=True)
    try:
        await before.connect(n, concurrency=args.concurrency, within=args.within, tries=None)
    except TimeoutError:
        raise StormError(
            f"the first {n} connects not done within {args.within:g} s; "
            f"retries {before.connect_retries}, errors {_top(before.errors)}"
        ) from None
    await asyncio.wait_for(asyncio.gather(*(c.subscribed for c in before.clients)), args.within)
    ledger.open(0, 1)  # everyone has message 0: the position they reconnect from
    position = await _publish(publisher, 0)
    if not await wait_delivered(ledger, n, args.within):
        raise StormError(f"message 0 not delivered to all {n} clients within {args.within:g} s")

    await before.close()  # every connection dropped at once
    for seq in range(1, missed + 1):
        await _publish(publisher, seq)
    ledger.open(1, missed + 1)

    servers = _servers(stack)
    cpu_before = {name: tree_cpu_seconds(pid) for name, pid in servers.items()}
    wire = RoomgateSinceWire(tokens, position.offset, position.epoch)
    after = Fleet(wire, ledger, "127.0.0.1", lb)
    after.subscribe_on_welcome = True
    started = time.perf_counter()
    try:
        connect_s = await after.connect(
            n, concurrency=args.concurrency, within=args.within, spread=jitter_ms / 1000, tries=None
        )
    except TimeoutError:
        raise StormError(
            f"the {n} reconnects not done within {args.within:g} s; "
            f"retries {after.connect_retries}, errors {_top(after.errors)}"
        ) from None
    try:
        await asyncio.wait_for(asyncio.gather(*(c.subscribed for c in after.clients)), args.within)
    except TimeoutError:
        subscribed = sum(1 for c in after.clients if c.subscribed.done())
        raise StormError(f"{subscribed}/{n} subscribed again within {args.within:g} s") from None
    if not await wait_delivered(ledger, n * missed, args.within):
        raise StormError(
            f"{ledger.delivered}/{n * missed} missed messages recovered within "
            f"{args.within:g} s; errors {after.errors}"
        )
    seconds = time.perf_counter() - started
    cpu = {
        name: round(tree_cpu_seconds(pid) - cpu_before[name], 3) for name, pid in servers.items()
    }
    result = ledger.close(missed)
    await after.close()
    return StormRound(
        clients=n,
        jitter_ms=jitter_ms,
        missed=missed,
        seconds=round(seconds, 3),
        connects_per_s=round(n / connect_s, 1),
        not_recovered=wire.not_recovered,
        errors=sum(after.errors.values()),
        connect_retries=after.connect_retries,
        subscribe_retries=after.subscribe_retries,
        lost=result.lost,
        duplicates=result.duplicates,
        dropped=after.dropped,
        cpu_s=cpu,
        error_kinds=_top(after.errors),
    )


def _line(r: StormRound) -> str:
    cpu = ", ".join(f"{name} {s:.1f}" for name, s in r.cpu_s.items())
    return (
        f"  jitter {r.jitter_ms} ms: {r.clients} clients subscribed and recovered in "
        f"{r.seconds:.2f} s ({r.connects_per_s:,.0f} connects/s); not recovered "
        f"{r.not_recovered}, errors {r.errors}, retries {r.connect_retries}+"
        f"{r.subscribe_retries}, lost {r.lost}, duplicates {r.duplicates}; CPU s: {cpu}"
        + "".join(f"\n      {n} x {text[:160]}" for text, n in r.error_kinds.items())
    )


def _report(rounds: list[StormRound]) -> None:
    print()
    print(f"target (issue 12): every client recovered in <= {TARGET_SECONDS:g} s, no error")
    for r in rounds:
        verdict = "PASS" if r.passed else "FAIL"
        print(f"  {verdict}  jitter {r.jitter_ms} ms: {r.seconds:.2f} s")
