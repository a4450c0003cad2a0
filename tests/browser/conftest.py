"""End-to-end tests of the browser SDK and the console in real headless Chromium (Debian's
``chromium``, driven by ``playwright-core`` from ``clients/js``; `make test` installs both
through ``mk/browser.mk``). A missing part fails the tests: they never skip.

The stack is the real ``LocalStack`` (redis-server, auth, roomauthz, escalation, two gateways
behind HAProxy); ``Browser`` steers ``clients/js/test/e2e/driver.mjs`` over stdin/stdout.
Screenshots land in ``clients/js/artifacts/`` (gitignored)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from roomgate_tools.controlplane import REPO_ROOT
from roomgate_tools.stack import LocalStack, StackConfig, StackPorts

JS_DIR = REPO_ROOT / "clients" / "js"
DRIVER = JS_DIR / "test" / "e2e" / "driver.mjs"
ARTIFACTS = JS_DIR / "artifacts"
CHROMIUM = os.environ.get("ROOMGATE_CHROMIUM", "/usr/bin/chromium")
CONSOLE_PERMS = ("view_system", "view_agents", "view_tasks", "ack_alerts", "resolve_alerts")
# Short heartbeats so that a frozen tab outlives heartbeat_timeout within the test.
HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT = 2, 5


def _require() -> None:
    missing = []
    if shutil.which("node") is None:
        missing.append("node")
    if not Path(CHROMIUM).exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if not (JS_DIR / "node_modules" / "playwright-core").is_dir():
        missing.append("clients/js/node_modules (npm ci)")
    if missing:
        pytest.fail(f"browser tests need {', '.join(missing)}: run `make browser-deps`")


class BrowserError(Exception):
    pass


class Browser:
    """One Chromium page at a time, steered by the node driver."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._id = 0

    @classmethod
    async def launch(cls) -> Browser:
        _require()
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(DRIVER),
            cwd=JS_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "ROOMGATE_CHROMIUM": CHROMIUM},
        )
        browser = cls(proc)
        hello = await browser._read(30)
        if not hello.get("ok"):
            raise BrowserError(hello)
        return browser

    async def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise BrowserError("the browser driver exited")
        return json.loads(line)  # type: ignore[no-any-return]

    async def call(self, cmd: str, timeout: float = 30, **kw: Any) -> Any:
        assert self.proc.stdin is not None
        self._id += 1
        self.proc.stdin.write((json.dumps({"id": self._id, "cmd": cmd, **kw}) + "\n").encode())
        await self.proc.stdin.drain()
        reply = await self._read(timeout)
        if not reply.get("ok"):
            raise BrowserError(reply.get("error"))
        return reply.get("value")

    async def eval(self, expr: str) -> Any:
        return await self.call("eval", expr=expr)

    async def wait(self, expr: str, timeout: float = 10) -> Any:
        """Wait until ``expr`` is truthy in the page; returns its value."""
        return await self.call("wait", timeout=timeout + 5, expr=expr, wait_ms=timeout * 1000)

    async def poll(self, expr: str, timeout: float = 10) -> Any:
        """``wait`` without the page's timers (for a page whose timers are suspended)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not (value := await self.eval(expr)):
            if asyncio.get_running_loop().time() > deadline:
                raise BrowserError(f"timed out waiting for {expr}")
            await asyncio.sleep(0.1)
        return value

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.call("screenshot", path=str(path))
        return path

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(BrowserError, TimeoutError):
                await self.call("close", timeout=10)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    b = await Browser.launch()
    try:
        yield b
    finally:
        await b.close()


def stack_config(state_dir: Path) -> StackConfig:
    return StackConfig(
        state_dir=state_dir,
        ports=StackPorts.free(),
        secrets={
            "ROOMGATE_JWT_HS256_SECRET": secrets.token_urlsafe(48),
            "ROOMGATE_ADMIN_SECRET": secrets.token_urlsafe(32),
            "ROOMGATE_JWT_ISSUER": "roomgate-browser",
            "ROOMGATE_JWT_AUDIENCE": "roomgate",
        },
        escalation=True,
        drain_seconds=0.5,
        aof=False,
        log_level="WARNING",
        gateway_env={
            "ROOMGATE_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
            "ROOMGATE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
        },
    )


def _running(state_dir: Path) -> Iterator[LocalStack]:  # one per module: ~15 s to start
    stack = LocalStack(stack_config(state_dir))
    stack.start(timeout=90)
    try:
        yield stack
    finally:
        stack.stop()
        stack.kill()


@pytest.fixture(scope="module")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole stack, for the tests of one module that leave it whole."""
    yield from _running(tmp_path_factory.mktemp("stack"))


def console_url(stack: LocalStack, uid: str = "42") -> str:
    token = stack.token(uid, perms=CONSOLE_PERMS)
    return f"{stack.lb_http}/console/#token={token}"


class Backend:
    """Publishes as a backend would (HTTP publish API, service token); remembers what was accepted."""

    def __init__(self, stack: LocalStack) -> None:
        self.url = f"{stack.lb_http}/api/v1/publish"
        self.token = stack.token("e2e-backend", kind="service", perms=("publish",))
        self.http = httpx.AsyncClient(timeout=5)
        self.accepted: dict[str, list[tuple[int, str]]] = {}

    async def publish(self, room: str, type_: str, data: dict[str, Any]) -> dict[str, Any] | None:
        try:
            r = await self.http.post(
                self.url,
                json={"room": room, "type": type_, "data": data},
                headers={"Authorization": f"Bearer {self.token}"},
            )
        except httpx.HTTPError:
            return None  # not accepted: not expected anywhere
        if r.status_code != 202:
            return None
        body: dict[str, Any] = r.json()
        self.accepted.setdefault(room, []).append((int(body["offset"]), body["id"]))
        return body

    def ids(self, room: str) -> list[str]:
        return [i for _, i in sorted(self.accepted.get(room, []))]

    async def aclose(self) -> None:
        await self.http.aclose()


@pytest.fixture
async def backend_for() -> AsyncIterator[Any]:
    made: list[Backend] = []

    def make(stack: LocalStack) -> Backend:
        made.append(Backend(stack))
        return made[-1]

    yield make
    for b in made:
        await b.aclose()
