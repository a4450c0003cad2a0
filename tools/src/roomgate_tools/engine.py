"""The one seam to a Docker engine: find a CLI that builds with BuildKit, use a running daemon
or start one of our own, and run ``docker`` commands against it.

    with DockerEngine.ensure() as engine:      # a running daemon, or our own until the block ends
        engine.docker("image", "ls")

A daemon of our own (``dockerd`` from Debian's ``docker.io``) keeps everything apart from any
other daemon on the machine: its own ``--data-root`` (the repository's ``.cache/images/docker``,
so images and BuildKit's cache survive it), ``--exec-root``, pid file and socket under /tmp,
no bridge and no iptables rules (``--bridge=none``): builds and containers use the host's
network and bind 127.0.0.1. One process at a time uses a data root (an flock next to it);
whoever starts the daemon stops it.

The CLI: Docker 23+ builds only through the buildx plugin; without it, a 20.x CLI (Debian's
``/usr/bin/docker``) still has BuildKit built in (``DOCKER_BUILDKIT=1``). ``EngineError`` says
what is missing: callers fail, never skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_DATA_ROOT = REPO_ROOT / ".cache" / "images" / "docker"


def default_data_root() -> Path:
    """Where our own dockerd keeps images: $ROOMGATE_DOCKER_DATA_ROOT, else this clone's
    .cache/images/docker."""
    return Path(os.environ.get("ROOMGATE_DOCKER_DATA_ROOT", DEFAULT_DATA_ROOT))


class EngineError(RuntimeError):
    """No usable Docker CLI or daemon, or a docker command failed."""


def _run(
    argv: Sequence[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(argv), env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"{' '.join(argv[:3])}... timed out after {timeout}s") from exc


def _client_major(cli: str) -> int | None:
    proc = _run([cli, "version", "--format", "{{.Client.Version}}"], dict(os.environ), 20)
    text = proc.stdout.strip().split(".", 1)[0]
    return int(text) if text.isdigit() else None


def find_cli() -> tuple[str, dict[str, str]]:
    """A docker CLI whose ``docker build`` uses BuildKit, and the environment it needs."""
    seen: list[str] = []
    for candidate in (shutil.which("docker"), "/usr/bin/docker"):
        if not candidate or candidate in seen or not os.access(candidate, os.X_OK):
            continue
        seen.append(candidate)
        if _run([candidate, "buildx", "version"], dict(os.environ), 20).returncode == 0:
            return candidate, {}
        major = _client_major(candidate)
        if major is not None and major < 23:
            return candidate, {"DOCKER_BUILDKIT": "1"}
    raise EngineError(
        f"no docker CLI that builds with BuildKit (tried {seen or ['docker']}: Docker 23+ needs "
        "the buildx plugin); on Debian install docker.io (`make images` does)"
    )


def _mounts_under(path: Path) -> list[str]:
    """Mount points below ``path`` (deepest first), from /proc/self/mountinfo."""
    prefix = str(path).rstrip("/") + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    points = [line.split()[4] for line in lines if len(line.split()) > 4]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


@dataclass
class DockerEngine:
    """A reachable daemon and the CLI to drive it. ``own`` when we started it."""

    cli: str
    env: dict[str, str]
    own: bool = False
    daemon: subprocess.Popen[bytes] | None = None
    lock: IO[str] | None = None
    run_dir: Path | None = None
    log_path: Path | None = None
    started_in: float = 0.0
    _stopped: bool = field(default=False, repr=False)

    # ------------------------------------------------------------------------ commands
    def docker(
        self,
        *args: str,
        timeout: float = 120,
        check: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``docker args...`` against this engine; ``EngineError`` on a non-zero exit."""
        env = {**self.env, **(extra_env or {})}
        proc = _run([self.cli, *args], env, timeout)
        if check and proc.returncode != 0:
            raise EngineError(
                f"docker {' '.join(args[:3])}... exited {proc.returncode}: "
                f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
            )
        return proc

    def has_image(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref, check=False, timeout=30).returncode == 0

    # --------------------------------------------------------------------------- start
    @classmethod
    def ensure(
        cls, data_root: Path | None = None, *, wait_lock: float = 900, start_timeout: float = 90
    ) -> DockerEngine:
        """The daemon ``docker`` reaches now ($DOCKER_HOST or the default socket), else a
        ``dockerd`` of our own on ``data_root``."""
        cli, extra = find_cli()
        env = {**os.environ, **extra}
        if _run([cli, "info", "--format", "{{.ServerVersion}}"], env, 30).returncode == 0:
            return cls(cli, env)
        return cls._start_own(
            cli,
            env,
            data_root or default_data_root(),
            wait_lock,
            start_timeout,
        )

    @classmethod
    def _start_own(
        cls, cli: str, env: dict[str, str], data_root: Path, wait_lock: float, start_timeout: float
    ) -> DockerEngine:
        dockerd = shutil.which("dockerd") or (
            "/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None
        )
        if dockerd is None:
            raise EngineError(
                "no Docker daemon is running and dockerd is not installed "
                "(Debian: apt-get install docker.io; `make images` does)"
            )
        if os.geteuid() != 0:
            raise EngineError("no Docker daemon is running, and starting dockerd needs root")
        data_root = data_root.resolve()
        data_root.mkdir(parents=True, exist_ok=True)
        lock = (data_root.parent / f"{data_root.name}.lock").open("w")
        deadline = time.monotonic() + wait_lock
        waited = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    waited = True
                    print(
                        f"engine: {data_root} is in use by another dockerd of ours; waiting",
                        file=sys.stderr,
                        flush=True,
                    )
                if time.monotonic() > deadline:
                    lock.close()
                    raise EngineError(f"{data_root} stayed in use by another dockerd") from None
                time.sleep(1)
        # Short paths: unix socket names are limited to 108 bytes.
        digest = hashlib.sha256(str(data_root).encode()).hexdigest()[:10]
        run_dir = Path(tempfile.gettempdir()) / f"roomgate-dockerd-{digest}"
        run_dir.mkdir(mode=0o700, exist_ok=True)
        if run_dir.is_symlink() or run_dir.stat().st_uid != os.geteuid():
            lock.close()
            raise EngineError(f"{run_dir} is not ours: remove it")
        sock = run_dir / "docker.sock"
        log_path = data_root.parent / "dockerd.log"
        argv = [
            dockerd,
            "--data-root", str(data_root),
            "--exec-root", str(run_dir / "exec"),
            "--pidfile", str(run_dir / "docker.pid"),
            "--host", f"unix://{sock}",
            "--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false",
            "--storage-driver=overlay2",
        ]  # fmt: skip
        started = time.monotonic()
        with log_path.open("ab") as log:
            daemon = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        engine = cls(
            cli,
            {**env, "DOCKER_HOST": f"unix://{sock}"},
            own=True,
            daemon=daemon,
            lock=lock,
            run_dir=run_dir,
            log_path=log_path,
        )
        until = time.monotonic() + start_timeout
        while engine.docker("info", check=False, timeout=10).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > until:
                engine.stop()
                tail = log_path.read_text(errors="replace").splitlines()[-15:]
                raise EngineError("dockerd did not come up:\n" + "\n".join(tail))
            time.sleep(0.2)
        engine.started_in = time.monotonic() - started
        return engine

    # ---------------------------------------------------------------------------- stop
    def stop(self, timeout: float = 60) -> None:
        """Stop the daemon we started (it stops its containers first); idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait(10)
        if self.daemon is not None and self.daemon.returncode == 0 and self.run_dir:
            # dockerd leaves its exec root's netns/default mounted: unmount, then remove.
            for mount in _mounts_under(self.run_dir):
                subprocess.run(["umount", "--lazy", mount], capture_output=True, check=False)
            shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.lock is not None:
            self.lock.close()

    def __enter__(self) -> DockerEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def engine(data_root: Path | None = None) -> Iterator[DockerEngine]:
    """``with engine() as e:`` — a daemon for the block, stopped after if we started it."""
    eng = DockerEngine.ensure(data_root)
    try:
        yield eng
    finally:
        eng.stop()
