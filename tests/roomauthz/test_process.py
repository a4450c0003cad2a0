"""The ``roomgate-roomauthz`` console script as a real process."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from roomgate_tools.procs import ManagedProcess, free_port, wait_for_port

BINARY = str(Path(sys.executable).with_name("roomgate-roomauthz"))


def test_process_serves_and_stops_on_sigterm(redis_url: str, tmp_path: Path) -> None:
    """The process serves health on its port and exits 0 after SIGTERM."""
    port = free_port()
    proc = ManagedProcess(
        [BINARY],
        log_path=tmp_path / "roomauthz.log",
        env={
            "ROOMGATE_LISTEN": f"127.0.0.1:{port}",
            "ROOMGATE_REDIS_URL": redis_url,
            "ROOMGATE_SHUTDOWN_GRACE": "1",
            "ROOMGATE_OTLP_ENDPOINT": "",
        },
    )
    proc.start()
    try:
        wait_for_port(port, timeout=20)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=5
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        proc.signal(signal.SIGTERM)
        assert proc.proc is not None
        assert proc.proc.wait(15) == 0, proc.output()
    finally:
        proc.kill()


def test_invalid_settings_exit_2_naming_the_variable(tmp_path: Path) -> None:
    """An invalid setting stops the process at start with the variable's name."""
    env = {"ROOMGATE_ACL_CACHE_TTL": "-1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([BINARY], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "ROOMGATE_ACL_CACHE_TTL" in done.stderr
