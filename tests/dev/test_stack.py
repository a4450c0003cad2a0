"""The local stack of ``roomgate dev`` as real processes: redis-server, auth, roomauthz, two
gateways and HAProxy with cookie affinity in front of them (``roomgate_tools.stack``), plus
``roomgate dev --check`` as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
import yaml
from roomgate_common.publisher import Publisher
from roomgate_common.redis_adapter import connect as redis_connect
from roomgate_tools.stack import (
    AFFINITY_COOKIE,
    LocalStack,
    StackConfig,
    StackPorts,
    haproxy_servers,
)
from websockets.asyncio.client import ClientConnection

pytestmark = pytest.mark.timeout(180)  # a loaded 2-core machine starts 6 processes slowly

ROOT = Path(__file__).resolve().parents[2]
GATEWAYS = ("gw-a", "gw-b")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("devstack"),
        ports=StackPorts.free(),
        secrets={
            "ROOMGATE_JWT_HS256_SECRET": secrets.token_urlsafe(48),
            "ROOMGATE_ADMIN_SECRET": secrets.token_urlsafe(32),
            "ROOMGATE_JWT_ISSUER": "roomgate-dev-test",
            "ROOMGATE_JWT_AUDIENCE": "roomgate",
        },
        gateway_ids=GATEWAYS,
        escalation=False,  # `roomgate dev --check` below runs it; spare the 2 cores here
        drain_seconds=0.5,
    )
    local = LocalStack(config)
    local.start(timeout=120)
    try:
        yield local
    finally:
        codes = local.stop()
    assert not [c.name for c in local.components if c.process.running]
    assert all(code in (0, -15) for code in codes.values()), codes


# ------------------------------------------------------------------------------ helpers
async def recv_until(
    ws: ClientConnection, match: Callable[[dict[str, Any]], bool], timeout: float = 10.0
) -> dict[str, Any]:
    """The next message (``batch`` frames unpacked) ``match`` accepts."""
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            batch = message.get("type") == "batch"
            for item in message.get("messages", []) if batch else [message]:
                if match(item):
                    return dict(item)


async def open_client(
    stack: LocalStack, cookie: str | None = None, uid: str = "42"
) -> tuple[ClientConnection, str, str | None]:
    """A client through HAProxy: (connection, gateway id from the welcome, Set-Cookie)."""
    headers = {"Cookie": cookie} if cookie else None
    token = stack.token(uid, perms=("view_system",))
    ws = await websockets.connect(stack.ws_url(token), additional_headers=headers, open_timeout=10)
    assert ws.response is not None
    welcome = await recv_until(ws, lambda m: True)
    assert welcome["type"] == "welcome", welcome
    return ws, welcome["data"]["gateway"], ws.response.headers.get("Set-Cookie")


def cookie_pair(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0].strip()


# -------------------------------------------------------------------------------- tests
def test_lb_sees_both_gateways_up(stack: LocalStack) -> None:
    assert haproxy_servers(stack.ports.lb) == dict.fromkeys(GATEWAYS, "UP")


async def test_first_response_sets_cookie_and_reconnects_stick(stack: LocalStack) -> None:
    ws, first, set_cookie = await open_client(stack)
    await ws.close()
    assert set_cookie is not None, "the upgrade response carries no affinity cookie"
    assert set_cookie.startswith(f"{AFFINITY_COOKIE}={first}")
    assert "Max-Age=172800" in set_cookie and "HttpOnly" in set_cookie
    cookie = cookie_pair(set_cookie)
    for _ in range(4):
        ws, again, renewed = await open_client(stack, cookie)
        await ws.close()
        assert again == first
        assert renewed is None  # a valid cookie is not set again


async def test_without_cookie_connections_are_balanced(stack: LocalStack) -> None:
    seen: list[str] = []
    for _ in range(4):
        ws, gateway, set_cookie = await open_client(stack)
        await ws.close()
        assert set_cookie is not None and cookie_pair(set_cookie) == f"{AFFINITY_COOKIE}={gateway}"
        seen.append(gateway)
    assert set(seen) == set(GATEWAYS), seen


async def test_publish_reaches_subscribers_on_both_gateways(stack: LocalStack) -> None:
    clients = []
    try:
        for uid, gateway in zip(("101", "102"), GATEWAYS, strict=True):
            ws, landed, _ = await open_client(stack, f"{AFFINITY_COOKIE}={gateway}", uid)
            clients.append(ws)
            assert landed == gateway
            await ws.send(json.dumps({"type": "subscribe", "data": {"room": "system"}}))
            ok = await recv_until(ws, lambda m: m.get("room") == "system")
            assert ok["type"] == "subscribed", ok

        redis = redis_connect(stack.redis_url)
        try:
            sent = await Publisher(redis, sender="dev-test").publish(
                "system", "metrics_update", {"cpu": 7}
            )
        finally:
            await redis.aclose()
        for ws in clients:
            got = await recv_until(ws, lambda m: m.get("id") == sent.id)
            assert got["room"] == "system" and got["data"] == {"cpu": 7}
            assert got["metadata"]["offset"] == sent.offset
            assert got["metadata"]["epoch"] == sent.epoch

        # The backend API through the LB: a service token with the publish permission.
        service = stack.token("dev-test", kind="service", perms=("publish",))
        status, reply = await asyncio.to_thread(
            post_json,
            f"{stack.lb_http}/api/v1/publish",
            {"room": "system", "type": "metrics_update", "data": {"cpu": 8}},
            service,
        )
        assert status == 202, reply
        for ws in clients:
            got = await recv_until(ws, lambda m: m.get("id") == reply["id"])
            assert got["data"] == {"cpu": 8}
            assert got["metadata"]["offset"] == reply["offset"] == sent.offset + 1
    finally:
        for ws in clients:
            await ws.close()


def post_json(url: str, body: dict[str, Any], token: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_cookie_name_matches_the_chart() -> None:
    values = ROOT / "charts" / "roomgate" / "values.yaml"
    if not values.exists():
        pytest.skip("no Helm chart in this checkout")
    chart = yaml.safe_load(values.read_text())
    assert chart["ingress"]["affinity"]["cookieName"] == AFFINITY_COOKIE
    assert chart["httpRoute"]["sessionPersistence"]["sessionName"] == AFFINITY_COOKIE


def test_dev_check_exits_zero(tmp_path: Path) -> None:
    """`roomgate dev --check` as a user runs it: its own stack on free ports, one client."""
    roomgate = Path(sys.executable).parent / "roomgate"
    env = {**os.environ, "ROOMGATE_DEV_DIR": str(tmp_path / "dev")}
    result = subprocess.run(
        [str(roomgate), "dev", "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].startswith("OK "), result.stdout
    # Its throw-away state is gone; only the dev secrets remain.
    assert sorted(p.name for p in (tmp_path / "dev").iterdir()) == ["secrets.env"]


async def test_draining_gateway_hands_its_clients_to_the_other(stack: LocalStack) -> None:
    """SIGTERM on one gateway: its client (pinned by cookie) gets a reconnect hint and 1012
    through HAProxy; reconnecting with the stale cookie lands on the other gateway."""
    leaving, staying = GATEWAYS[1], GATEWAYS[0]
    gateway = stack.component(leaving)
    ws, landed, _ = await open_client(stack, f"{AFFINITY_COOKIE}={leaving}")
    try:
        assert landed == leaving
        gateway.process.signal(signal.SIGTERM)
        hint = await recv_until(ws, lambda m: m.get("type") == "reconnect")
        assert hint["data"]["reason"] == "draining"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await recv_until(ws, lambda m: False)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        assert await asyncio.to_thread(gateway.process.proc.wait, 20) in (0, -15)
        assert stack.dead() is gateway  # what `roomgate dev` watches for

        ws2, moved, set_cookie = await open_client(stack, f"{AFFINITY_COOKIE}={leaving}")
        await ws2.close()
        assert moved == staying
        assert set_cookie is not None and cookie_pair(set_cookie) == f"{AFFINITY_COOKIE}={staying}"
    finally:
        await ws.close()
        # Bring it back for whatever runs next (the stack is shared by the module).
        if not gateway.process.running:
            gateway.process.start()
        await wait_for(lambda: haproxy_servers(stack.ports.lb) == dict.fromkeys(GATEWAYS, "UP"))


async def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while not await asyncio.to_thread(condition):
            await asyncio.sleep(0.1)


async def test_lb_log_has_no_token(stack: LocalStack) -> None:
    ws, _, _ = await open_client(stack)
    await ws.close()
    log = stack.log_dir / "haproxy.log"
    await wait_for(lambda: "GET /ws" in log.read_text(), timeout=10)
    assert "token=" not in log.read_text()
