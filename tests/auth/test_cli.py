"""``roomgate token`` in-process: minting with the dev secrets, --via-auth, --decode; and the
pure core's layering (no I/O library imported by tokens/errors)."""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
from pathlib import Path

import pytest
import roomgate_auth
from roomgate_tools.cli import build_parser
from roomgate_tools.commands import token as token_command

from .conftest import ADMIN_SECRET, AUDIENCE, HS256_SECRET, ISSUER, Running

DEV = {
    "ROOMGATE_JWT_HS256_SECRET": HS256_SECRET,
    "ROOMGATE_ADMIN_SECRET": ADMIN_SECRET,
    "ROOMGATE_JWT_ISSUER": ISSUER,
    "ROOMGATE_JWT_AUDIENCE": AUDIENCE,
}


@pytest.fixture
def dev(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads the test's secrets instead of .dev/secrets.env."""
    monkeypatch.setattr(token_command, "dev_secrets", lambda: dict(DEV))


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["token", *argv])


async def test_printed_token_is_accepted(
    dev: None, auth: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    """`roomgate token --kind agent --id 9 --group 3 --perm p` prints a token the service takes."""
    args = parse("--kind", "agent", "--id", "9", "--group", "3", "--perm", "p", "--session", "12")
    assert args.func(args) == 0
    principal = await auth.authenticate(capsys.readouterr().out.strip())
    assert (principal.id, principal.session_id) == ("9", "12")
    assert (list(principal.group_ids), list(principal.permissions)) == (["3"], ["p"])


async def test_via_auth_uses_issue_token(
    dev: None, auth: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    """--via-auth asks the running service (IssueToken with the admin credential)."""
    args = parse("--id", "77", "--team", "5", "--via-auth", f"127.0.0.1:{auth.server.port}")
    assert await asyncio.to_thread(args.func, args) == 0
    principal = await auth.authenticate(capsys.readouterr().out.strip())
    assert (principal.id, list(principal.team_ids)) == ("77", ["5"])


def test_invalid_id_is_refused(dev: None, capsys: pytest.CaptureFixture[str]) -> None:
    """A non-canonical user id prints an error and exits 2, printing no token."""
    args = parse("--id", "007")
    assert args.func(args) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert "not a valid user id" in out.err


def test_decode_prints_claims_and_verdict(dev: None, capsys: pytest.CaptureFixture[str]) -> None:
    """--decode prints header and claims and says whether the dev service would accept it."""
    args = parse("--id", "5")
    args.func(args)
    token = capsys.readouterr().out.strip()
    args = parse("--decode", token)
    assert args.func(args) == 0
    out = capsys.readouterr()
    decoded = json.loads(out.out)
    assert decoded["header"]["alg"] == "HS256"
    assert decoded["claims"]["sub"] == "5"
    assert "accepted" in out.err


def test_pure_core_imports_no_io_library() -> None:
    """roomgate_auth.tokens and .errors import neither grpc, redis nor starlette."""
    package = Path(roomgate_auth.__file__).parent
    for module in ("tokens.py", "errors.py"):
        tree = ast.parse((package / module).read_text())
        names = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        roots = {name.split(".")[0] for name in names}
        assert not roots & {"grpc", "redis", "starlette", "kubernetes", "roomgate"}, module
