"""Authorize: roomauthz decisions per second and latency, with the ACL cache on and off.

Starts its own redis-server and the roomauthz server as a subprocess (``roomgate-roomauthz``,
so the server's CPU is its own process and the figures are honest on a 2-core machine), fills
ACL data (agents in groups, users in groups and teams), then for each cache setting measures:

- Authorize: ``--clients`` concurrent callers, one call in flight each, a realistic mix of
  rooms (agent-{id} with ACL reads, group-, team-, user-, global rooms and a few unknown names);
- AuthorizeMany: the same with ``--batch`` items per call (a gateway re-subscribing after a
  reconnect).

Prints calls/s, decisions/s, p50/p99 latency (client-observed, ms) and decisions per server
CPU-second. The clients (grpc.aio) run in this process. Each phase lasts ``--duration``
seconds; everything started is stopped at the end, also on errors or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from roomgate.auth.v1 import auth_pb2
from roomgate.roomauthz.v1 import roomauthz_pb2 as pb
from roomgate.roomauthz.v1 import roomauthz_pb2_grpc as pb_grpc

from roomgate_tools.bench._procstat import cpu_seconds, percentile
from roomgate_tools.procs import ManagedProcess, RedisProcess, free_port, wait_for_port

SERVICE = "roomgate.roomauthz.v1.RoomAuthzService"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per phase (3)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent callers (8)")
    parser.add_argument("--batch", type=int, default=20, help="items per AuthorizeMany (20)")
    parser.add_argument("--agents", type=int, default=2000, help="agents in the ACL (2000)")
    parser.add_argument("--users", type=int, default=1000, help="users in the ACL (1000)")
    parser.add_argument("--groups", type=int, default=50, help="groups (50)")
    parser.add_argument(
        "--cache-ttl",
        type=float,
        action="append",
        help="server ACL cache TTL to measure (repeatable; default: 1.0 and 0 = off)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")


@dataclass
class Figures:
    phase: str
    cache_ttl: float
    calls: int
    decisions: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu_s: float

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds

    @property
    def decisions_per_cpu_s(self) -> float:
        return self.decisions / self.server_cpu_s if self.server_cpu_s else 0.0


class Workload:
    """Deterministic random principals and rooms over the ACL data the bench loads."""

    def __init__(self, args: argparse.Namespace, seed: int = 7) -> None:
        self.args = args
        self.rng = random.Random(seed)

    def acl(self) -> list[pb.AclEntry]:
        a = self.args
        entries = [
            pb.AclEntry(
                relation=pb.RELATION_AGENT_GROUP, subject_id=str(i), object_id=str(i % a.groups + 1)
            )
            for i in range(1, a.agents + 1)
        ]
        for u in range(1, a.users + 1):
            for g in {u % a.groups + 1, (u * 7) % a.groups + 1}:
                entries.append(
                    pb.AclEntry(
                        relation=pb.RELATION_USER_GROUP, subject_id=str(u), object_id=str(g)
                    )
                )
            entries.append(
                pb.AclEntry(
                    relation=pb.RELATION_USER_TEAM, subject_id=str(u), object_id=str(u % 9 + 1)
                )
            )
        return entries

    def principal(self) -> auth_pb2.Principal:
        uid = self.rng.randint(1, self.args.users)
        return auth_pb2.Principal(
            kind=auth_pb2.PRINCIPAL_KIND_USER,
            id=str(uid),
            session_id=str(uid * 1000 + 1),
            permissions=["view_system", "view_tasks"] if uid % 3 else ["view_agents"],
            roles=["ops"] if uid % 5 == 0 else [],
        )

    def room(self) -> str:
        r = self.rng.random()
        a = self.args
        if r < 0.45:
            return f"agent-{self.rng.randint(1, a.agents)}"
        if r < 0.60:
            return f"group-{self.rng.randint(1, a.groups)}"
        if r < 0.70:
            return f"team-{self.rng.randint(1, 9)}"
        if r < 0.80:
            return f"user-{self.rng.randint(1, a.users)}"
        if r < 0.95:
            return self.rng.choice(["system", "alerts", "agents", "tasks", "role-ops"])
        return self.rng.choice(["agent-01", "Agents", "lobby", "task-1/../2"])


async def measure(
    stub: pb_grpc.RoomAuthzServiceStub,
    workload: Workload,
    *,
    batch: int,
    clients: int,
    duration: float,
    server_pid: int,
) -> tuple[int, int, float, list[float], float]:
    """Run ``clients`` callers for ``duration`` s; batch 0 means Authorize."""
    latencies: list[float] = []
    calls = 0
    decisions = 0
    requests: list[pb.AuthorizeRequest | pb.AuthorizeManyRequest] = []
    for _ in range(512):
        principal = workload.principal()
        if batch:
            items = [
                pb.RoomAction(room=workload.room(), action=pb.ACTION_SUBSCRIBE)
                for _ in range(batch)
            ]
            requests.append(pb.AuthorizeManyRequest(principal=principal, items=items))
        else:
            requests.append(
                pb.AuthorizeRequest(
                    principal=principal, room=workload.room(), action=pb.ACTION_SUBSCRIBE
                )
            )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration

    async def caller(offset: int) -> None:
        nonlocal calls, decisions
        i = offset
        while loop.time() < deadline:
            request = requests[i % len(requests)]
            i += 1
            start = time.perf_counter()
            if batch:
                await stub.AuthorizeMany(request, timeout=5)
                decisions += batch
            else:
                await stub.Authorize(request, timeout=5)
                decisions += 1
            latencies.append(time.perf_counter() - start)
            calls += 1

    cpu_before = cpu_seconds(server_pid)
    started = time.perf_counter()
    await asyncio.gather(*(caller(c * 61) for c in range(clients)))
    elapsed = time.perf_counter() - started
    return calls, decisions, elapsed, sorted(latencies), cpu_seconds(server_pid) - cpu_before


async def run_server_phases(
    args: argparse.Namespace, workdir: Path, redis: RedisProcess, ttl: float
) -> list[Figures]:
    port = free_port()
    admin = secrets.token_urlsafe(16)
    binary = Path(sys.executable).with_name("roomgate-roomauthz")
    server = ManagedProcess(
        [str(binary)],
        log_path=workdir / f"roomauthz-ttl{ttl}.log",
        env={
            "ROOMGATE_LISTEN": f"127.0.0.1:{port}",
            "ROOMGATE_REDIS_URL": redis.url,
            "ROOMGATE_ADMIN_SECRET": admin,
            "ROOMGATE_METRICS_LISTEN": "127.0.0.1:0",
            "ROOMGATE_ACL_CACHE_TTL": str(ttl),
            "ROOMGATE_LOG_LEVEL": "WARNING",
            "ROOMGATE_POLICY_FILE": "",
            "ROOMGATE_OTLP_ENDPOINT": "",
        },
    )
    server.start()
    figures: list[Figures] = []
    try:
        await asyncio.to_thread(wait_for_port, port, 15.0)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(100):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
                await asyncio.sleep(0.05)
            admin_stub = pb_grpc.AclAdminServiceStub(channel)
            entries = Workload(args).acl()
            for i in range(0, len(entries), 1000):
                await admin_stub.ChangeAcl(
                    pb.ChangeAclRequest(add=entries[i : i + 1000]),
                    metadata=(("authorization", f"Bearer {admin}"),),
                    timeout=10,
                )
            stub = pb_grpc.RoomAuthzServiceStub(channel)
            assert server.proc is not None
            pid = server.proc.pid
            for name, batch in (("Authorize", 0), (f"AuthorizeMany x{args.batch}", args.batch)):
                workload = Workload(args, seed=11)
                await measure(stub, workload, batch=batch, clients=args.clients, duration=0.5,
                              server_pid=pid)  # fmt: skip  # warm-up
                calls, decisions, elapsed, lat, cpu = await measure(
                    stub, workload, batch=batch, clients=args.clients,
                    duration=args.duration, server_pid=pid,
                )  # fmt: skip
                figures.append(
                    Figures(
                        phase=name,
                        cache_ttl=ttl,
                        calls=calls,
                        decisions=decisions,
                        seconds=elapsed,
                        p50_ms=percentile(lat, 0.50) * 1000,
                        p99_ms=percentile(lat, 0.99) * 1000,
                        server_cpu_s=cpu,
                    )
                )
    finally:
        code = server.stop(timeout=10)
        if code not in (0, None):
            print(f"roomauthz exited with {code}:\n{server.output()[-2000:]}", file=sys.stderr)
    return figures


async def _main(args: argparse.Namespace) -> list[Figures]:
    workdir = Path(tempfile.mkdtemp(prefix="roomgate-bench-authz-"))
    redis = RedisProcess(workdir / "redis", aof=False)
    redis.start()
    try:
        figures: list[Figures] = []
        for ttl in args.cache_ttl or [1.0, 0.0]:
            figures += await run_server_phases(args, workdir, redis, ttl)
            client = aioredis.Redis.from_url(redis.url)
            await client.flushall()  # the next server starts from an empty ACL
            await client.aclose()
        return figures
    finally:
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    try:
        figures = asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(json.dumps([{**asdict(f), "calls_per_s": f.calls_per_s} for f in figures], indent=2))
        return 0
    print(
        f"roomauthz Authorize benchmark: server in its own process, {args.clients} clients"
        f" (grpc.aio, this process), {args.duration:g} s per phase, {os.cpu_count()} CPUs"
    )
    header = (
        f"{'phase':<20} {'cache':>6} {'calls/s':>9} {'decisions/s':>12} {'p50 ms':>8}"
        f" {'p99 ms':>8} {'decisions/server-CPU-s':>23}"
    )
    print(header)
    print("-" * len(header))
    for f in figures:
        cache = f"{f.cache_ttl:g}s" if f.cache_ttl else "off"
        print(
            f"{f.phase:<20} {cache:>6} {f.calls_per_s:>9.0f} {f.decisions / f.seconds:>12.0f}"
            f" {f.p50_ms:>8.2f} {f.p99_ms:>8.2f} {f.decisions_per_cpu_s:>23.0f}"
        )
    return 0
