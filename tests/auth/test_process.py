"""The auth service as a process: the ``roomgate-auth`` console script with the dev secrets
accepts what ``roomgate token`` prints, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from roomgate.auth.v1 import auth_pb2, auth_pb2_grpc
from roomgate_auth.main import main
from roomgate_tools.procs import ManagedProcess, free_port, wait_for_port

BIN = Path(sys.executable).parent


def roomgate(*args: str, dev_dir: Path) -> str:
    done = subprocess.run(
        [str(BIN / "roomgate"), *args],
        env={**os.environ, "ROOMGATE_DEV_DIR": str(dev_dir)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


def dev_env(dev_dir: Path) -> dict[str, str]:
    lines = (dev_dir / "secrets.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


async def test_console_script_accepts_a_token_of_roomgate_token(
    redis_url: str, tmp_path: Path
) -> None:
    """`roomgate-auth` with the dev secrets accepts a `roomgate token` token, exits 0 on TERM."""
    dev_dir = tmp_path / "dev"
    token = await asyncio.to_thread(
        roomgate, "token", "--kind", "user", "--id", "42", "--group", "3", dev_dir=dev_dir
    )
    port = free_port()
    service = ManagedProcess(
        [str(BIN / "roomgate-auth")],
        log_path=tmp_path / "auth.log",
        env={
            **dev_env(dev_dir),
            "ROOMGATE_REDIS_URL": redis_url,
            "ROOMGATE_LISTEN": f"127.0.0.1:{port}",
            "ROOMGATE_METRICS_LISTEN": "127.0.0.1:0",
            "ROOMGATE_SHUTDOWN_GRACE": "2",
        },
    )
    service.start()
    try:
        await asyncio.to_thread(wait_for_port, port, 20)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            reply = await stub.Authenticate(
                auth_pb2.AuthenticateRequest(token=token), wait_for_ready=True, timeout=20
            )
            assert (reply.principal.id, list(reply.principal.group_ids)) == ("42", ["3"])
    finally:
        code = await asyncio.to_thread(service.stop, 10)
    output = service.output()
    assert code == 0, output
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert {"auth service ready", "auth service stopped"} <= {r["message"] for r in records}
    assert token not in output


def test_missing_configuration_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """main() exits 2 naming the variables when no key or no issuer is configured."""
    for name in [k for k in os.environ if k.startswith("ROOMGATE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ROOMGATE_JWT_ISSUER", "i")
    monkeypatch.setenv("ROOMGATE_JWT_AUDIENCE", "a")
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert "ROOMGATE_JWT_HS256_SECRET" in capsys.readouterr().err
    monkeypatch.delenv("ROOMGATE_JWT_ISSUER")
    with pytest.raises(SystemExit):
        main()
    assert "ROOMGATE_JWT_ISSUER" in capsys.readouterr().err
