"""Local processes for the dev runner, the tests and the benchmarks: a real redis-server on
its own port and data directory, and Roomgate services started from their console scripts.

Everything listens on 127.0.0.1 and is stopped by whoever started it.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


class ProcessError(RuntimeError):
    """A local process could not be started or did not become ready."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise ProcessError(f"nothing listens on {host}:{port} after {timeout}s")


def which(binary: str) -> str:
    """Absolute path of a required binary; fails (never skips) when it is missing."""
    found = shutil.which(binary) or (
        f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None
    )
    if not found:
        raise ProcessError(f"{binary} is not installed; run `make setup`")
    return found


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM when the process that started it dies (even SIGKILLed)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class ManagedProcess:
    """A child process with terminate/kill helpers and its output in a log file.

    ``detached=True`` starts it in its own process group (a Ctrl-C in the terminal reaches
    only the parent, which then stops its children in order) and has the kernel send it
    SIGTERM should the parent die without stopping it (start it from a thread that lives as
    long as the parent: the kernel ties the signal to the starting thread).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        detached: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.detached = detached
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            process_group=0 if self.detached else None,
            preexec_fn=_die_with_parent if self.detached else None,
        )
        log.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class RedisProcess(ManagedProcess):
    """A real redis-server on 127.0.0.1 with its own data directory (AOF on by default)."""

    def __init__(self, data_dir: Path, *, port: int = 0, aof: bool = True) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            which("redis-server"),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(data_dir),
            "--save", "",
            "--appendonly", "yes" if aof else "no",
            "--appendfsync", "everysec",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--maxclients", "10000",
        ]  # fmt: skip
        super().__init__(argv, log_path=data_dir / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        super().start()
        try:
            wait_for_port(self.port, timeout=10)
        except ProcessError as exc:
            self.kill()
            raise ProcessError(f"redis-server did not start:\n{self.output()}") from exc

    def restart(self) -> None:
        self.stop()
        self.start()


class RedisClusterProcess:
    """A real Redis Cluster of ``nodes`` masters on 127.0.0.1 (no replicas), for tests of
    the ``redis+cluster://`` mode. Slots are spread by ``redis-cli --cluster create``."""

    def __init__(self, data_dir: Path, *, nodes: int = 3) -> None:
        self.nodes: list[ManagedProcess] = []
        self.ports = [free_port() for _ in range(nodes)]
        self.data_dir = data_dir
        for port in self.ports:
            node_dir = data_dir / str(port)
            node_dir.mkdir(parents=True, exist_ok=True)
            argv = [
                which("redis-server"),
                "--bind", "127.0.0.1",
                "--port", str(port),
                "--dir", str(node_dir),
                "--cluster-enabled", "yes",
                "--cluster-port", str(free_port()),  # default port+10000 may exceed 65535
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
            ]  # fmt: skip
            self.nodes.append(ManagedProcess(argv, log_path=node_dir / "redis.log"))

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        for port in self.ports:
            wait_for_port(port, timeout=10)
        create = subprocess.run(
            [
                which("redis-cli"),
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if create.returncode != 0:
            self.stop()
            raise ProcessError(
                f"redis-cli --cluster create failed: {create.stdout!r} {create.stderr!r}"
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    [which("redis-cli"), "-p", str(p), "cluster", "info"],
                    capture_output=True,
                    timeout=5,
                    check=False,
                ).stdout
                for p in self.ports
            ]
            if all(b"cluster_state:ok" in s for s in states):
                return
            time.sleep(0.1)
        self.stop()
        raise ProcessError("redis cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class RedisSentinelProcess:
    """A real redis-server (master) watched by one real Redis Sentinel, for tests of the
    ``redis+sentinel://`` mode."""

    MASTER_NAME = "roomgate"

    def __init__(self, data_dir: Path) -> None:
        self.master = RedisProcess(data_dir / "master", aof=False)
        self.port = free_port()
        conf = data_dir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {data_dir}\n"
            f"sentinel monitor {self.MASTER_NAME} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.MASTER_NAME} 2000\n"
        )
        self.sentinel = ManagedProcess(
            [which("redis-server"), str(conf), "--sentinel"], log_path=data_dir / "sentinel.log"
        )

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.MASTER_NAME}/0"

    def start(self) -> None:
        self.master.start()
        self.sentinel.start()
        wait_for_port(self.port, timeout=10)

    def stop(self) -> None:
        self.sentinel.stop()
        self.master.stop()
