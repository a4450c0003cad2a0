"""``ContainerProcess`` as values: the ``docker run`` it builds (the chart's security
context, env by name only) — no engine needed."""

from __future__ import annotations

import signal
from pathlib import Path

from roomgate_tools.containers import ContainerProcess, ContainerRuntime, Mount
from roomgate_tools.engine import DockerEngine


def _process(**kwargs: object) -> ContainerProcess:
    engine = DockerEngine("/usr/bin/docker", {"PATH": "/usr/bin", "PYTHONUNBUFFERED": "1"})
    runtime = ContainerRuntime(engine, {}, "infra", stack_id="roomgate-test")
    return ContainerProcess(
        runtime,
        "gw-1",
        "ghcr.io/roomgate/roomgate-gateway:0.1.0",
        log_path=Path("/nonexistent/gw-1.log"),
        env={"ROOMGATE_LISTEN": "127.0.0.1:1", "ROOMGATE_JWT_HS256_SECRET": "s3cret"},
        **kwargs,  # type: ignore[arg-type]
    )


def test_run_argv_has_the_chart_security_context_and_no_secret_values() -> None:
    """--read-only, user 10001, cap-drop ALL, no-new-privileges, tmpfs /tmp, host network;
    variables by name only (the secret's value is in no argv)."""
    process = _process(mounts=[Mount(Path("/srv/cfg"), "/etc/cfg")])
    process.container = "roomgate-test-gw-1-1"
    argv = process.run_argv()
    joined = " ".join(argv)
    for flag in (
        "--read-only",
        "--user 10001:10001",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        "--tmpfs /tmp:size=64m",
        "--network host",
        "--label io.roomgate.stack=roomgate-test",
        "--mount type=bind,source=/srv/cfg,target=/etc/cfg,readonly",
        "--env ROOMGATE_JWT_HS256_SECRET",
    ):
        assert flag in joined, flag
    assert "s3cret" not in joined
    assert argv[-1] == "ghcr.io/roomgate/roomgate-gateway:0.1.0"
    assert "--init" not in argv


def test_env_changes_after_construction_reach_the_container() -> None:
    """What the stack adds to ``env`` later (gateway extras) is passed, what it drops is not."""
    process = _process()
    process.env["ROOMGATE_HEARTBEAT_INTERVAL"] = "5"
    process.env.pop("ROOMGATE_LISTEN")
    assert process.passed_env() == ["ROOMGATE_HEARTBEAT_INTERVAL", "ROOMGATE_JWT_HS256_SECRET"]


def test_stop_signal_and_init_for_haproxy() -> None:
    """HAProxy: SIGTERM becomes SIGUSR1 (its soft stop) and docker-init is PID 1."""
    process = _process(stop_signal=signal.SIGUSR1, init=True)
    process.container = "c"
    argv = process.run_argv()
    assert "--init" in argv
    assert argv[argv.index("--stop-signal") + 1] == "SIGUSR1"
