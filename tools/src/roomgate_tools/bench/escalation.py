"""Escalation timers: lag (fire time - due time) and sustained triggers/s with 3 replicas.

Starts a redis-server (temporary directory) and N replicas of ``roomgate-escalation`` as
processes, triggers ``--alerts`` alerts over gRPC (round robin, ``--concurrency`` calls in
flight), each escalating once ``--delay`` s (+ up to ``--spread`` s) after its trigger, and
listens on the ``alerts`` room channel for every ``alert_escalated``. Prints triggers/s, the
timer lag percentiles (the replica's claim time minus the due time, both Redis clock) and
the delivery lag (received on the channel minus due), and checks every level arrived
exactly once. Stops everything by itself, within ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import grpc
import redis.asyncio as aioredis
from roomgate.escalation.v1 import escalation_pb2 as pb
from roomgate.escalation.v1 import escalation_pb2_grpc as pb_grpc
from roomgate_auth.server import AuthServer
from roomgate_auth.settings import AuthSettings
from roomgate_common import keys
from roomgate_common.identity import Principal, PrincipalKind

from roomgate_tools.procs import ManagedProcess, RedisProcess, free_port, wait_for_port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alerts", type=int, default=10_000, help="alerts to trigger")
    parser.add_argument("--replicas", type=int, default=3, help="escalation processes")
    parser.add_argument("--delay", type=float, default=10.0, help="escalation delay (s)")
    parser.add_argument("--spread", type=float, default=5.0, help="extra random delay (s)")
    parser.add_argument("--concurrency", type=int, default=64, help="Trigger calls in flight")
    parser.add_argument("--poll-interval", type=float, default=0.25, help="timer poll (s)")
    parser.add_argument("--timeout", type=float, default=180.0, help="give up after (s)")


def _ms(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _listen(
    url: str,
    ready: asyncio.Event,
    seen: dict[tuple[str, int], int],
    lags: list[tuple[float, float]],
    window: list[float],
) -> None:
    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(keys.room_channel("alerts"))
    ready.set()
    try:
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is None:
                continue
            received = time.time() * 1000
            _offset, _epoch, payload = msg["data"].split(b" ", 2)
            envelope = json.loads(payload)
            if envelope["type"] != "alert_escalated":
                continue
            data = envelope["data"]
            key = (data["alert_id"], data["level"])
            seen[key] = seen.get(key, 0) + 1
            due = _ms(data["due_at"])
            lags.append((_ms(data["escalated_at"]) - due, received - due))
            window[0] = min(window[0], due)
            window[1] = max(window[1], received)
    finally:
        await pubsub.aclose()
        await client.aclose()


async def _bench(args: argparse.Namespace, tmp: Path) -> int:
    script = Path(sys.executable).parent / "roomgate-escalation"
    if not script.exists():
        print(f"{script} is missing: run `make setup`")
        return 1
    deadline = time.monotonic() + args.timeout
    redis_proc = RedisProcess(tmp / "redis", aof=False)
    redis_proc.start()
    procs: list[ManagedProcess] = []
    channels: list[grpc.aio.Channel] = []
    listener: asyncio.Task[None] | None = None
    # Escalation verifies every caller with auth: a real auth service, and a service token.
    auth = AuthServer(
        AuthSettings.from_env(
            listen="127.0.0.1:0",
            redis_url=redis_proc.url,
            jwt_issuer="roomgate-bench",
            jwt_audience="roomgate",
            jwt_hs256_secret=secrets.token_urlsafe(48),
            metrics_listen="",
            redis_check_interval=0,
        )
    )
    await auth.start()
    token, _ = auth.policy.mint(
        Principal(kind=PrincipalKind.SERVICE, id="bench", permissions=("escalation",))
    )
    metadata = (("authorization", f"Bearer {token}"),)
    try:
        ports = []
        for i in range(args.replicas):
            port = free_port()
            proc = ManagedProcess(
                [str(script)],
                log_path=tmp / f"replica-{i}.log",
                env={
                    "ROOMGATE_REDIS_URL": redis_proc.url,
                    "ROOMGATE_AUTH_ADDR": f"127.0.0.1:{auth.port}",
                    "ROOMGATE_ESCALATION_LISTEN": f"127.0.0.1:{port}",
                    "ROOMGATE_ESCALATION_CONSUMER_NAME": f"bench-{i}",
                    "ROOMGATE_ESCALATION_POLL_INTERVAL": str(args.poll_interval),
                    "ROOMGATE_METRICS_LISTEN": "127.0.0.1:0",
                    "ROOMGATE_LOG_LEVEL": "WARNING",
                    "ROOMGATE_ESCALATION_MAX_ACTIVE_ALERTS": str(max(args.alerts, 1) * 2),
                },
            )
            proc.start()
            procs.append(proc)
            ports.append(port)
        for port in ports:
            await asyncio.to_thread(wait_for_port, port, 30.0)
        stubs = []
        for port in ports:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            channels.append(channel)
            stubs.append(pb_grpc.EscalationServiceStub(channel))

        seen: dict[tuple[str, int], int] = {}
        lags: list[tuple[float, float]] = []
        ready = asyncio.Event()
        window = [float("inf"), 0.0]  # first due time, last escalation received (ms)
        listener = asyncio.create_task(_listen(redis_proc.url, ready, seen, lags, window))
        await ready.wait()

        rng = random.Random(5)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(args.alerts):
            queue.put_nowait(i)
        errors = 0

        async def worker() -> None:
            nonlocal errors
            while not queue.empty():
                i = queue.get_nowait()
                delay = args.delay + rng.random() * args.spread
                try:
                    await stubs[i % len(stubs)].Trigger(
                        pb.TriggerRequest(
                            alert_id=f"bench-{i}",
                            severity="critical",
                            title=f"bench alert {i}",
                            actions=[
                                pb.EscalateAction(delay_seconds=delay, target=f"team-{i % 10 + 1}")
                            ],
                        ),
                        timeout=30,
                        metadata=metadata,
                    )
                except grpc.aio.AioRpcError:
                    errors += 1

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        trigger_s = time.monotonic() - start
        print(
            f"triggered {args.alerts} alerts in {trigger_s:.2f}s: "
            f"{args.alerts / trigger_s:,.0f} triggers/s ({errors} errors, "
            f"{args.replicas} replicas, {args.concurrency} in flight)",
            flush=True,
        )
        expected = args.alerts - errors
        for _ in range(int(max(deadline - time.monotonic(), 0) / 0.2) + 1):
            if len(seen) >= expected:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)  # let late duplicates (there should be none) arrive
        duplicates = sum(n - 1 for n in seen.values() if n > 1)
        print(
            f"escalations received: {len(seen)}/{expected}, duplicates: {duplicates}",
            flush=True,
        )
        if lags:
            fire = [f for f, _ in lags]
            delivered = [d for _, d in lags]
            print(
                "timer lag (claim - due, ms): "
                f"p50 {_pct(fire, 0.5):.1f}  p99 {_pct(fire, 0.99):.1f}  "
                f"max {max(fire):.1f}  mean {statistics.fmean(fire):.1f}"
            )
            span_s = max(window[1] - window[0], 1.0) / 1000
            print(
                f"escalations fired: {len(lags)} in {span_s:.1f}s from the first due time: "
                f"{len(lags) / span_s:,.0f}/s"
            )
            print(
                "delivery lag (received on the room channel - due, ms): "
                f"p50 {_pct(delivered, 0.5):.1f}  p99 {_pct(delivered, 0.99):.1f}  "
                f"max {max(delivered):.1f}"
            )
        ok = len(seen) == expected and duplicates == 0 and errors == 0
        if not ok:
            print("FAILED: missing escalations, duplicates or trigger errors")
        return 0 if ok else 1
    finally:
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        for channel in channels:
            await channel.close(grace=None)  # grpc-stubs make grace required; it is not
        for proc in procs:
            await asyncio.to_thread(proc.stop, 10.0)
        await auth.stop()
        redis_proc.stop()


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="rg-bench-escalation-") as tmp:
        return asyncio.run(_bench(args, Path(tmp)))
