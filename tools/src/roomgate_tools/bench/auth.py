"""Auth: tokens verified per second and latency for HS256, RS256 and EdDSA tokens, by unary
Authenticate calls and by AuthenticateBatch calls of ``--batch`` tokens.

Starts its own redis-server and the auth service as a subprocess (``roomgate-auth``, so the
server's CPU is its own process and the figures are honest on a 2-core machine), trusting an
HS256 secret, an RSA-2048 and an Ed25519 public key (generated for the run). Tokens are
minted here with the service's own code (``roomgate_auth.tokens``), a pool of distinct users
per algorithm. For each algorithm ``--clients`` concurrent callers (grpc.aio, this process)
keep one Authenticate in flight each for ``--duration`` seconds after a short warm-up; then,
for each ``--batch N``, one AuthenticateBatch of N tokens in flight each (what a gateway's
AuthClient sends in a reconnect storm). Every token is verified and checked for revocation
in Redis (one round trip per call: a pipeline for a batch).

Prints calls/s, tokens/s, p50/p99 call latency (client-observed, ms) and tokens per server
CPU-second, the unary and batched cases of one algorithm side by side (same run, same server).
Everything started is stopped at the end, also on errors or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from roomgate.auth.v1 import auth_pb2, auth_pb2_grpc
from roomgate_auth.tokens import (
    KeyRing,
    SigningKey,
    TokenPolicy,
    hs256_key,
    hs256_signing_key,
    signing_key_from_pem,
)
from roomgate_common.identity import Principal, PrincipalKind

from roomgate_tools.bench._procstat import cpu_seconds, percentile
from roomgate_tools.procs import ManagedProcess, RedisProcess, free_port, wait_for_port

SERVICE = "roomgate.auth.v1.AuthService"
ISSUER = "roomgate-bench"
AUDIENCE = "roomgate"
ALGORITHMS = ("HS256", "RS256", "EdDSA")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per case (3)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent callers (8)")
    parser.add_argument("--tokens", type=int, default=500, help="distinct tokens per case (500)")
    parser.add_argument(
        "--alg",
        action="append",
        choices=ALGORITHMS,
        help="algorithm to measure (repeatable; default: all)",
    )
    parser.add_argument(
        "--batch",
        action="append",
        type=int,
        help="also measure AuthenticateBatch calls of N tokens (repeatable; default: 50; 0: none)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")


@dataclass
class Figures:
    algorithm: str
    # tokens per call: 0 for unary Authenticate, N for AuthenticateBatch of N
    batch: int
    calls: int
    tokens: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu_s: float

    @property
    def case(self) -> str:
        return f"batch {self.batch}" if self.batch else "unary"

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def tokens_per_cpu_s(self) -> float:
        return self.tokens / self.server_cpu_s if self.server_cpu_s else 0.0


def pem(private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class KeyMaterial:
    """The run's keys: files for the server, signing keys for the minting side."""

    def __init__(self, workdir: Path) -> None:
        self.secret = secrets.token_urlsafe(48)
        rsa_key = rsa.generate_private_key(65537, 2048)
        ed_key = ed25519.Ed25519PrivateKey.generate()
        self.public_dir = workdir / "public"
        self.public_dir.mkdir()
        (self.public_dir / "bench-rsa.pem").write_bytes(public_pem(rsa_key))
        (self.public_dir / "bench-ed.pem").write_bytes(public_pem(ed_key))
        self.signing: dict[str, SigningKey] = {
            "HS256": hs256_signing_key(self.secret),
            "RS256": signing_key_from_pem("bench-rsa", pem(rsa_key)),
            "EdDSA": signing_key_from_pem("bench-ed", pem(ed_key)),
        }

    def tokens(self, algorithm: str, count: int) -> list[str]:
        policy = TokenPolicy(
            issuer=ISSUER,
            audience=AUDIENCE,
            keys=KeyRing.build([], hs256_key(self.secret)),
            signing=self.signing[algorithm],
        )
        return [
            policy.mint(
                Principal(
                    PrincipalKind.USER,
                    str(1000 + i),
                    roles=("operator",),
                    permissions=("view_system", "view_tasks"),
                    group_ids=(str(i % 50 + 1),),
                    team_ids=(str(i % 9 + 1),),
                ),
                ttl=3600,
            )[0]
            for i in range(count)
        ]


async def measure(
    stub: auth_pb2_grpc.AuthServiceStub,
    tokens: list[str],
    *,
    batch: int,
    clients: int,
    duration: float,
    server_pid: int,
) -> tuple[int, float, list[float], float]:
    """``clients`` callers, one call in flight each, for ``duration`` seconds: Authenticate
    (``batch`` 0) or AuthenticateBatch of ``batch`` tokens. Every token must be accepted."""
    calls = 0
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration

    async def unary(request: auth_pb2.AuthenticateRequest) -> None:
        await stub.Authenticate(request, timeout=5)

    async def batched(request: auth_pb2.AuthenticateBatchRequest) -> None:
        reply = await stub.AuthenticateBatch(request, timeout=5)
        refused = [r.rejected for r in reply.results if r.WhichOneof("result") != "principal"]
        if refused or len(reply.results) != batch:
            raise RuntimeError(f"AuthenticateBatch refused benchmark tokens: {refused[:3]}")

    make_call: Callable[[Any], Awaitable[None]]
    if batch:
        cycled = tokens * (batch // len(tokens) + 2)
        make_call = batched
        requests: list[Any] = [
            auth_pb2.AuthenticateBatchRequest(tokens=cycled[i : i + batch])
            for i in range(0, len(tokens), max(1, batch // 4))
        ]
    else:
        make_call = unary
        requests = [auth_pb2.AuthenticateRequest(token=t) for t in tokens]

    async def caller(offset: int) -> None:
        nonlocal calls
        i = offset
        while loop.time() < deadline:
            request = requests[i % len(requests)]
            i += 1
            start = time.perf_counter()
            await make_call(request)
            latencies.append(time.perf_counter() - start)
            calls += 1

    cpu_before = cpu_seconds(server_pid)
    started = time.perf_counter()
    await asyncio.gather(*(caller(c * 37) for c in range(clients)))
    elapsed = time.perf_counter() - started
    return calls, elapsed, sorted(latencies), cpu_seconds(server_pid) - cpu_before


async def _main(args: argparse.Namespace) -> list[Figures]:
    workdir = Path(tempfile.mkdtemp(prefix="roomgate-bench-auth-"))
    redis = RedisProcess(workdir / "redis", aof=False)
    server: ManagedProcess | None = None
    try:
        keys = KeyMaterial(workdir)
        redis.start()
        port = free_port()
        server = ManagedProcess(
            [str(Path(sys.executable).with_name("roomgate-auth"))],
            log_path=workdir / "auth.log",
            env={
                "ROOMGATE_LISTEN": f"127.0.0.1:{port}",
                "ROOMGATE_REDIS_URL": redis.url,
                "ROOMGATE_METRICS_LISTEN": "127.0.0.1:0",
                "ROOMGATE_JWT_ISSUER": ISSUER,
                "ROOMGATE_JWT_AUDIENCE": AUDIENCE,
                "ROOMGATE_JWT_HS256_SECRET": keys.secret,
                "ROOMGATE_JWT_PUBLIC_KEYS": str(keys.public_dir),
                "ROOMGATE_JWKS_FILE": "",
                "ROOMGATE_JWT_SIGNING_KEY_FILE": "",
                "ROOMGATE_LOG_LEVEL": "WARNING",
                "ROOMGATE_OTLP_ENDPOINT": "",
            },
        )
        server.start()
        await asyncio.to_thread(wait_for_port, port, 20.0)
        assert server.proc is not None
        pid = server.proc.pid
        figures: list[Figures] = []
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(100):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
                await asyncio.sleep(0.05)
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            batches = [0, *(b for b in (args.batch or [50]) if b > 0)]
            for algorithm in args.alg or ALGORITHMS:
                tokens = keys.tokens(algorithm, args.tokens)
                for batch in batches:
                    options = {"batch": batch, "clients": args.clients, "server_pid": pid}
                    await measure(stub, tokens, duration=0.5, **options)
                    calls, elapsed, latencies, cpu = await measure(
                        stub, tokens, duration=args.duration, **options
                    )
                    figures.append(
                        Figures(
                            algorithm=algorithm,
                            batch=batch,
                            calls=calls,
                            tokens=calls * max(1, batch),
                            seconds=elapsed,
                            p50_ms=percentile(latencies, 0.50) * 1000,
                            p99_ms=percentile(latencies, 0.99) * 1000,
                            server_cpu_s=cpu,
                        )
                    )
        return figures
    finally:
        if server is not None:
            code = server.stop(timeout=10)
            if code not in (0, None):
                print(
                    f"roomgate-auth exited with {code}:\n{server.output()[-2000:]}", file=sys.stderr
                )
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    try:
        figures = asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(
            json.dumps(
                [
                    {
                        **asdict(f),
                        "calls_per_s": f.calls_per_s,
                        "tokens_per_s": f.tokens_per_s,
                        "tokens_per_cpu_s": f.tokens_per_cpu_s,
                    }
                    for f in figures
                ],
                indent=2,
            )
        )
        return 0
    print(
        f"auth Authenticate/AuthenticateBatch benchmark: server in its own process,"
        f" {args.clients} clients (grpc.aio, this process, one call in flight each),"
        f" {args.duration:g} s per case, {os.cpu_count()} CPUs"
    )
    header = (
        f"{'algorithm':<10} {'case':<10} {'calls/s':>9} {'tokens/s':>9} {'p50 ms':>8}"
        f" {'p99 ms':>8} {'tokens/server-CPU-s':>20}"
    )
    print(header)
    print("-" * len(header))
    for f in figures:
        print(
            f"{f.algorithm:<10} {f.case:<10} {f.calls_per_s:>9.0f} {f.tokens_per_s:>9.0f}"
            f" {f.p50_ms:>8.2f} {f.p99_ms:>8.2f} {f.tokens_per_cpu_s:>20.0f}"
        )
    return 0
