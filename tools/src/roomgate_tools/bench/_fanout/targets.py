"""The servers under test: how each is started on 127.0.0.1, fed events and stopped.

- ``GatewayTarget``: ``roomgate-gateway`` with the auth and roomauthz services it needs;
  events go through Roomgate's publisher (the Lua script, the room's channel).
- ``StarletteTarget``: the naive baseline (``starlette_server``), fed by the same publisher.
- ``SocketIOTarget``: the python-socketio baseline (``socketio_server``), fed by an external
  ``AsyncRedisManager(write_only=True)``.

Every process writes its output to a log file in the run's work directory.
"""

from __future__ import annotations

import asyncio
import http.client
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol

import jwt

from roomgate_tools.bench._fanout.loadgen import Wire
from roomgate_tools.bench._fanout.wire import PlainWire, RoomgateWire, SocketIOWire
from roomgate_tools.procs import ManagedProcess, ProcessError, free_port, wait_for_port

ROOM = "system"
EVENT_TYPE = "metrics_update"
SOCKETIO_CHANNEL = "bench-socketio"


_STARTED: list[ManagedProcess] = []


def stop_on_exit(process: ManagedProcess) -> None:
    """Remember ``process`` for ``stop_all_started``."""
    _STARTED.append(process)


def stop_all_started() -> None:
    """Stop every process this benchmark started that still runs (the last resort after an
    interruption; the normal path stops each one itself)."""
    while _STARTED:
        process = _STARTED.pop()
        if process.running:
            process.stop(timeout=5)


class EventPublisher(Protocol):
    async def publish(self, seq: int) -> None: ...
    async def close(self) -> None: ...


def _script(name: str) -> str:
    """A console script of the workspace: next to this Python first, then on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise ProcessError(f"{name} is not installed; run `make setup`")
    return found


# The server's venv and workspace sources compiled to bytecode before it starts (the stdlib
# comes compiled), as in the images (UV_COMPILE_BYTECODE=1, services/*/Dockerfile). Otherwise a
# venv without .pyc files (uv's default; PYTHONDONTWRITEBYTECODE) compiles at import, the
# compiler's freed memory sits in the baseline RSS and the connections reuse it: the
# per-connection figure then reads ~6 KiB low, and differently for two venvs whose .pyc files
# differ (seen 2026-12-04, docs/benchmarks.md).
_BYTE_COMPILE = (
    "import compileall, os, sys\n"
    "for p in sys.path:\n"
    "    if os.path.isdir(p) and not p.startswith(sys.base_prefix):\n"
    "        compileall.compile_dir(p, quiet=2, workers=0)\n"
)


def byte_compile(python: str) -> None:
    """Compile what ``python`` imports from (a no-op when the .pyc files are current)."""
    try:
        done = subprocess.run([python, "-c", _BYTE_COMPILE], capture_output=True, text=True)
    except OSError as exc:
        raise ProcessError(f"byte-compiling for {python} failed: {exc}") from exc
    if done.returncode != 0:
        raise ProcessError(f"byte-compiling for {python} failed:\n{done.stderr[-2000:]}")


class _Target:
    name = ""
    description = ""
    host = "127.0.0.1"

    def __init__(self) -> None:
        self.port = 0
        self.processes: list[ManagedProcess] = []
        self.server: ManagedProcess | None = None

    @property
    def pid(self) -> int:
        assert self.server is not None
        assert self.server.proc is not None
        return self.server.proc.pid

    @property
    def running(self) -> bool:
        return self.server is not None and self.server.running

    def _spawn(
        self, argv: list[str], log: Path, env: dict[str, str] | None = None
    ) -> ManagedProcess:
        process = ManagedProcess(argv, log_path=log, env=env)
        self.processes.append(process)
        stop_on_exit(process)
        process.start()
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop(timeout=5)
        self.processes.clear()

    def log_tail(self, lines: int = 15) -> str:
        if self.server is None:
            return ""
        return "\n".join(self.server.output().splitlines()[-lines:])

    def _wait_ready(self, path: str, timeout: float) -> None:
        """Until ``GET path`` answers 200 (or the server exits, or ``timeout`` passes)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise ProcessError(f"{self.name} exited:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=1)
                conn.request("GET", path)
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise ProcessError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")


class _BaselineTarget(_Target):
    module = ""
    channel = ""
    ws = "auto"  # uvicorn's WebSocket implementation (fanout --baseline-ws)

    def start(self, workdir: Path, redis_url: str, clients: int) -> None:
        byte_compile(sys.executable)
        self.port = free_port()
        argv = [sys.executable, "-m", self.module, "--port", str(self.port)]
        argv += ["--redis-url", redis_url, "--channel", self.channel, "--ws", self.ws]
        self.server = self._spawn(argv, workdir / f"{self.name}.log")
        try:
            wait_for_port(self.port, timeout=20)
        except ProcessError as exc:
            raise ProcessError(f"{self.name} did not start:\n{self.log_tail()}") from exc


class StarletteTarget(_BaselineTarget):
    name = "starlette"
    description = "naive Starlette + uvicorn, loop of send_text"
    module = "roomgate_tools.bench._fanout.starlette_server"

    def __init__(self) -> None:
        super().__init__()
        from roomgate_common import keys

        self.channel = keys.room_channel(ROOM)

    def wire(self) -> Wire:
        return PlainWire()

    async def publisher(self, redis_url: str) -> EventPublisher:
        return RoomgateBusPublisher(redis_url)


class SocketIOTarget(_BaselineTarget):
    name = "socketio"
    description = "python-socketio AsyncServer + AsyncRedisManager on uvicorn"
    module = "roomgate_tools.bench._fanout.socketio_server"
    channel = SOCKETIO_CHANNEL

    def wire(self) -> Wire:
        return SocketIOWire()

    async def publisher(self, redis_url: str) -> EventPublisher:
        return SocketIOPublisher(redis_url, self.channel)


class GatewayTarget(_Target):
    name = "gateway"
    description = "roomgate-gateway (full protocol: JWT auth, room authorisation)"
    # Where its console scripts are (None: this workspace's)
    bin_dir: Path | None = None

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name) if self.bin_dir is not None else _script(name)

    def __init__(self) -> None:
        super().__init__()
        self.secret = secrets.token_urlsafe(48)
        self.issuer = "roomgate-bench"
        self.audience = "roomgate"
        self.admin = secrets.token_urlsafe(32)
        self.tokens: list[str] = []

    def _mint(self, user: int) -> str:
        now = time.time()
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user),
            "kind": "user",
            "sid": str(user),
            "perms": ["view_system"],
            "iat": round(now, 6),
            "exp": int(now) + 3600,
            "jti": secrets.token_urlsafe(16),
        }
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def start(self, workdir: Path, redis_url: str, clients: int) -> None:
        byte_compile(self._bin("python"))
        # One user per client, and a few more for the warm-up clients.
        self.tokens = [self._mint(user) for user in range(1, clients + 100)]
        common = {
            "ROOMGATE_REDIS_URL": redis_url,
            "ROOMGATE_METRICS_LISTEN": "127.0.0.1:0",
            "ROOMGATE_LOG_LEVEL": "WARNING",
            "ROOMGATE_ADMIN_SECRET": self.admin,
        }
        auth_port, authz_port, self.port = free_port(), free_port(), free_port()
        self._spawn(
            [self._bin("roomgate-auth")],
            workdir / "auth.log",
            {
                **common,
                "ROOMGATE_LISTEN": f"127.0.0.1:{auth_port}",
                "ROOMGATE_JWT_HS256_SECRET": self.secret,
                "ROOMGATE_JWT_ISSUER": self.issuer,
                "ROOMGATE_JWT_AUDIENCE": self.audience,
            },
        )
        self._spawn(
            [self._bin("roomgate-roomauthz")],
            workdir / "roomauthz.log",
            {**common, "ROOMGATE_LISTEN": f"127.0.0.1:{authz_port}"},
        )
        wait_for_port(auth_port, timeout=20)
        wait_for_port(authz_port, timeout=20)
        self.server = self._spawn(
            [self._bin("roomgate-gateway")],
            workdir / "gateway.log",
            {
                **common,
                "ROOMGATE_LISTEN": f"127.0.0.1:{self.port}",
                "ROOMGATE_AUTH_ADDR": f"127.0.0.1:{auth_port}",
                "ROOMGATE_ROOMAUTHZ_ADDR": f"127.0.0.1:{authz_port}",
                "ROOMGATE_MAX_CONNECTIONS_PER_IP": "100000",
                "ROOMGATE_MAX_CONNECTIONS_PER_USER": "100000",
            },
        )
        self._wait_ready("/readyz", timeout=30)

    def wire(self) -> Wire:
        return RoomgateWire(self.tokens)

    async def publisher(self, redis_url: str) -> EventPublisher:
        return RoomgateBusPublisher(redis_url)


class BaseGatewayTarget(GatewayTarget):
    """The gateway of another checkout (``--base-gateway DIR``: its venv's ``bin``), in the
    same run as this one: a before/after on one workload, the two taking turns."""

    name = "gateway-base"
    description = "roomgate-gateway of the --base-gateway checkout"


Target = GatewayTarget | StarletteTarget | SocketIOTarget

TARGETS: dict[str, type[Target]] = {
    "gateway": GatewayTarget,
    "gateway-base": BaseGatewayTarget,
    "starlette": StarletteTarget,
    "socketio": SocketIOTarget,
}


class RoomgateBusPublisher:
    """Roomgate's real publish path: ``Publisher.publish`` (one Lua script per event)."""

    def __init__(self, redis_url: str) -> None:
        from roomgate_common.publisher import Publisher
        from roomgate_common.redis_adapter import connect

        self._redis = connect(redis_url, name="bench-publisher")
        self._publisher = Publisher(self._redis, sender="bench")

    async def publish(self, seq: int) -> None:
        data = {"t": time.time_ns(), "seq": seq}
        await self._publisher.publish(ROOM, EVENT_TYPE, data)

    async def close(self) -> None:
        await self._redis.aclose()


class SocketIOPublisher:
    """An external ``AsyncRedisManager(write_only=True)`` emitting to the room."""

    def __init__(self, redis_url: str, channel: str) -> None:
        import socketio

        self._manager = socketio.AsyncRedisManager(redis_url, channel=channel, write_only=True)

    async def publish(self, seq: int) -> None:
        data = {"t": time.time_ns(), "seq": seq}
        await self._manager.emit(EVENT_TYPE, data, namespace="/", room=ROOM)

    async def close(self) -> None:
        redis = getattr(self._manager, "redis", None)
        if redis is not None:
            await redis.aclose()


async def stop_in_thread(target: Target) -> None:
    await asyncio.to_thread(target.stop)
