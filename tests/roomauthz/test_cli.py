"""``roomgate acl`` as a subprocess against a running roomauthz server."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from roomgate_roomauthz.server import RoomAuthzServer
from roomgate_roomauthz.settings import RoomAuthzSettings
from roomgate_tools import cli

ADMIN = "cli-admin-secret"
ROOMGATE = str(Path(sys.executable).with_name("roomgate"))


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[RoomAuthzServer]:
    settings = RoomAuthzSettings.from_env(
        listen="127.0.0.1:0", redis_url=redis_url, admin_secret=ADMIN, shutdown_grace=0.5
    )
    s = RoomAuthzServer(settings)
    await s.start()
    yield s
    await s.stop(0.5)


async def roomgate(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "ROOMGATE_ADMIN_SECRET": ADMIN}
    proc = await asyncio.create_subprocess_exec(
        ROOMGATE, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def run_cli(*argv: str) -> int:
    """``roomgate`` in-process (called from a thread: the server shares the test's loop)."""
    try:
        cli.main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


async def test_acl_add_then_list_as_subprocess(server: RoomAuthzServer) -> None:
    """`roomgate acl add` then `acl list`, as real subprocesses, change and show the ACL."""
    addr = f"127.0.0.1:{server.port}"
    code, out, _ = await roomgate("acl", "add", "agent_group", "7", "3", "4", "--server", addr)
    assert code == 0
    assert out.splitlines() == [
        "added agent_group 7 -> 3",
        "added agent_group 7 -> 4",
        "acl version 1",
    ]
    code, out, _ = await roomgate("acl", "--server", addr, "list")
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [
        ["relation", "subject", "object"],
        ["agent_group", "7", "3"],
        ["agent_group", "7", "4"],
        ["2", "entries,", "acl", "version", "1"],
    ]


async def test_acl_wrong_secret_exits_non_zero(
    server: RoomAuthzServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong admin secret exits 3 with PERMISSION_DENIED on stderr."""
    monkeypatch.setenv("ROOMGATE_ADMIN_SECRET", "wrong")
    argv = ["acl", "add", "agent_group", "7", "3", "--server", f"127.0.0.1:{server.port}"]
    assert await asyncio.to_thread(run_cli, *argv) == 3
    assert "PERMISSION_DENIED" in capsys.readouterr().err


async def test_acl_remove_and_filtered_list(
    server: RoomAuthzServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`acl remove` removes one entry; `acl list --relation --subject` shows only that subject."""
    monkeypatch.setenv("ROOMGATE_ADMIN_SECRET", ADMIN)
    addr = f"127.0.0.1:{server.port}"
    run = asyncio.to_thread
    assert await run(run_cli, "acl", "add", "agent_group", "7", "3", "4", "--server", addr) == 0
    assert await run(run_cli, "acl", "add", "user_team", "42", "5", "--server", addr) == 0
    assert await run(run_cli, "acl", "remove", "agent_group", "7", "3", "--server", addr) == 0
    capsys.readouterr()
    argv = ["acl", "list", "--relation", "agent_group", "--subject", "7", "--server", addr]
    assert await run(run_cli, *argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines[1:-1]] == [["agent_group", "7", "4"]]
    assert lines[-1] == "1 entries, acl version 3"


async def test_acl_check_reports_the_decision(
    server: RoomAuthzServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`roomgate acl check` prints the decision and exits 0 when allowed, 1 when denied."""
    monkeypatch.setenv("ROOMGATE_ADMIN_SECRET", ADMIN)
    addr = f"127.0.0.1:{server.port}"
    run = asyncio.to_thread
    assert await run(run_cli, "acl", "add", "agent_group", "7", "3", "--server", addr) == 0
    capsys.readouterr()
    argv = ["acl", "check", "--id", "42", "--group", "3", "--room", "agent-7", "--server", addr]
    assert await run(run_cli, *argv) == 0
    assert capsys.readouterr().out.strip() == "user 42: subscribe agent-7: allowed"
    argv = ["acl", "check", "--kind", "agent", "--id", "7", "--room", "agents"]
    argv += ["--action", "publish", "--type", "task_created", "--server", addr]
    assert await run(run_cli, *argv) == 1
    assert capsys.readouterr().out.strip() == (
        "agent 7: publish agents [task_created]: denied (type_not_allowed)"
    )


async def test_acl_bad_input_and_unreachable_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A non-canonical id exits 2 before any call; an unreachable server exits 3."""
    monkeypatch.setenv("ROOMGATE_ADMIN_SECRET", ADMIN)
    assert await asyncio.to_thread(run_cli, "acl", "add", "agent_group", "07", "3") == 2
    assert "'07'" in capsys.readouterr().err
    assert await asyncio.to_thread(run_cli, "acl", "list", "--server", "127.0.0.1:1") == 3
    assert "UNAVAILABLE from 127.0.0.1:1" in capsys.readouterr().err
