"""Containers that behave like ``ManagedProcess``: the container stack (``roomgate dev
--containers``, tests/images) runs each part with ``docker run`` in the foreground, so the
stack runner's start, readiness, stop and kill logic stays the same.

``docker run`` stays attached: its output is the container's log, its exit code the
container's, and a signal it receives (the runner dying: PR_SET_PDEATHSIG) is forwarded to
the container. ``signal()``/``kill()`` go through ``docker kill``: SIGKILL cannot be
forwarded, and a killed CLI would leave its container running.

Every container runs the way the chart runs its pods: ``--read-only``, a numeric non-root
``--user``, ``--cap-drop ALL``, ``--security-opt no-new-privileges``, a tmpfs where the chart
mounts an emptyDir (/tmp), on the host's network bound to 127.0.0.1 (no bridge: the ports
are the local stack's), labelled with the stack's id so that ``remove_all`` finds leftovers.
"""

from __future__ import annotations

import itertools
import secrets
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from roomgate_tools.engine import DockerEngine
from roomgate_tools.procs import ManagedProcess

STACK_LABEL = "io.roomgate.stack"
SERVICE_USER = "10001:10001"  # the chart's podSecurityContext runAsUser/runAsGroup
REDIS_USER = "999:999"  # the chart's Redis pod
CHART_TMPFS = "/tmp:size=64m"  # noqa: S108 - the chart's emptyDir on /tmp (sizeLimit 64Mi)


@dataclass
class ContainerRuntime:
    """Where and what the container stack runs: an engine, the images, a unique id."""

    engine: DockerEngine
    images: Mapping[str, str]  # service -> reference (roomgate_tools.images.chart_images)
    infra: str  # Redis and HAProxy (tools/images/infra)
    stack_id: str = field(default_factory=lambda: f"roomgate-{secrets.token_hex(3)}")

    def missing(self) -> list[str]:
        refs = [*self.images.values(), self.infra]
        return [ref for ref in refs if not self.engine.has_image(ref)]

    def remove_all(self) -> None:
        """Force-remove whatever container of this stack is left (never expected)."""
        listed = self.engine.docker(
            "ps", "-aq", "--filter", f"label={STACK_LABEL}={self.stack_id}", check=False
        )
        ids = listed.stdout.split()
        if ids:
            self.engine.docker("rm", "-f", *ids, check=False)


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = True

    def arg(self) -> str:
        return f"type=bind,source={self.source},target={self.target}" + (
            ",readonly" if self.read_only else ""
        )


class ContainerProcess(ManagedProcess):
    """One container of ``image`` run as ``docker run --rm`` (see the module docstring)."""

    _counter = itertools.count(1)

    def __init__(
        self,
        runtime: ContainerRuntime,
        name: str,
        image: str,
        *,
        log_path: Path,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        user: str = SERVICE_USER,
        mounts: Sequence[Mount] = (),
        tmpfs: Sequence[str] = (CHART_TMPFS,),
        ulimits: Sequence[str] = (),
        stop_timeout: int = 30,
        stop_signal: signal.Signals = signal.SIGTERM,
        init: bool = False,
    ) -> None:
        self.runtime = runtime
        self.name = name
        self.image = image
        self.args = list(args)
        self.container_env = dict(env or {})
        self.user = user
        self.mounts = list(mounts)
        self.tmpfs = list(tmpfs)
        self.ulimits = list(ulimits)
        self.stop_timeout = stop_timeout
        # What SIGTERM becomes: HAProxy as PID 1 ignores SIGTERM and soft-stops on SIGUSR1
        # (the STOPSIGNAL of the upstream haproxy image).
        self.stop_signal = stop_signal
        # docker-init (tini) as PID 1 for a program that does not handle SIGTERM as PID 1:
        # the SIGTERM the CLI forwards when the runner dies still ends it.
        self.init = init
        self.container = ""
        # Values reach the container by name only (``-e KEY``): no secret in any argv.
        super().__init__([], log_path=log_path, env={**runtime.engine.env}, detached=True)
        self._engine_env = dict(self.env)
        self.env.update(self.container_env)

    def run_argv(self) -> list[str]:
        argv = [
            self.runtime.engine.cli, "run", "--rm",
            "--name", self.container,
            "--label", f"{STACK_LABEL}={self.runtime.stack_id}",
            "--network", "host",
            "--read-only",
            "--user", self.user,
            "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",
            "--stop-timeout", str(self.stop_timeout),
            "--stop-signal", self.stop_signal.name,
        ]  # fmt: skip
        if self.init:
            argv.append("--init")
        for spec in self.tmpfs:
            argv += ["--tmpfs", spec]
        for mount in self.mounts:
            argv += ["--mount", mount.arg()]
        for limit in self.ulimits:
            argv += ["--ulimit", limit]
        for key in self.passed_env():
            argv += ["--env", key]
        return [*argv, self.image, *self.args]

    def passed_env(self) -> list[str]:
        """The names handed to the container: its own variables, and whatever was set in
        ``env`` since (the stack adds the gateways' extras there, or drops one)."""
        own = {key for key in self.container_env if key in self.env}
        changed = {k for k, v in self.env.items() if self._engine_env.get(k) != v}
        return sorted(own | changed)

    def start(self) -> None:
        # A new name per start: the last one's --rm may still be under way.
        self.container = f"{self.runtime.stack_id}-{self.name}-{next(self._counter)}"
        self.argv = self.run_argv()
        super().start()

    def signal(self, sig: int) -> None:
        if self.running:
            name = (self.stop_signal if sig == signal.SIGTERM else signal.Signals(sig)).name
            self.runtime.engine.docker(
                "kill", "--signal", name, self.container, check=False, timeout=30
            )

    def kill(self) -> None:
        """SIGKILL the container (``docker kill``), then reap the attached CLI."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.runtime.engine.docker("kill", self.container, check=False, timeout=30)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode
