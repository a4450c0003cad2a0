"""compose.yaml, the quick start for a machine with Docker only: brought up with the images
``make images`` built (Redis and HAProxy from the infra image: no registry here), on its own
compose network; one client through its HAProxy gets a welcome, joins a room and receives
events published through Redis and through the HTTP API; the ``token`` one-shot mints a
token the stack accepts; every container exits 0 on ``compose stop``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from roomgate_tools.commands.dev import check_client
from roomgate_tools.containers import ContainerRuntime
from roomgate_tools.controlplane import REPO_ROOT
from roomgate_tools.procs import free_port
from roomgate_tools.stack import (
    DEFAULT_GATEWAY_IDS,
    LocalStack,
    StackConfig,
    StackPorts,
    compose_haproxy_config,
    gateway_service_credential,
    haproxy_servers,
)

pytestmark = pytest.mark.timeout(240)

COMPOSE_FILE = REPO_ROOT / "compose.yaml"
HAPROXY_CFG = REPO_ROOT / "tools" / "images" / "compose" / "haproxy.cfg"


def test_compose_haproxy_config_is_the_stacks() -> None:
    """tools/images/compose/haproxy.cfg is what compose_haproxy_config() generates (the
    local stack's HAProxy with the gateways by name); regenerate it when this fails."""
    assert HAPROXY_CFG.read_text() == compose_haproxy_config(), (
        "python -c 'from roomgate_tools.stack import compose_haproxy_config as c; "
        'print(c(), end="")\' > tools/images/compose/haproxy.cfg'
    )


@dataclasses.dataclass
class Compose:
    argv: list[str]
    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.argv, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode != 0:
            pytest.fail(f"compose {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc


@pytest.fixture
def compose(container_runtime: ContainerRuntime) -> Iterator[tuple[Compose, LocalStack]]:
    engine = container_runtime.engine
    if engine.docker("compose", "version", check=False).returncode == 0:
        argv = [engine.cli, "compose"]
    elif found := shutil.which("docker-compose"):
        argv = [found]
    else:
        pytest.fail("neither `docker compose` nor docker-compose: run `make images-deps`")
    project = f"roomgate-test-{secrets.token_hex(3)}"
    config = StackConfig(
        state_dir=Path("/nonexistent"),
        ports=dataclasses.replace(StackPorts.free(), lb=free_port(), redis=free_port()),
        secrets={
            "ROOMGATE_JWT_HS256_SECRET": secrets.token_urlsafe(48),
            "ROOMGATE_ADMIN_SECRET": secrets.token_urlsafe(32),
            "ROOMGATE_JWT_ISSUER": "roomgate-compose-test",
            "ROOMGATE_JWT_AUDIENCE": "roomgate",
        },
    )
    gateway_key, service_keys = gateway_service_credential()
    env = {
        **os.environ,
        **engine.env,
        **config.resolved_secrets(),
        "ROOMGATE_ESCALATION_API_KEY": gateway_key,
        "ROOMGATE_SERVICE_KEYS": service_keys,
        "ROOMGATE_LB_PORT": str(config.ports.lb),
        "ROOMGATE_REDIS_PORT": str(config.ports.redis),
        "ROOMGATE_REDIS_IMAGE": container_runtime.infra,
        "ROOMGATE_HAPROXY_IMAGE": container_runtime.infra,
    }
    run = Compose([*argv, "--project-name", project, "--file", str(COMPOSE_FILE)], env)
    try:
        run("up", "--detach", "--no-build")
        yield run, LocalStack(config)
    finally:
        subprocess.run(
            [*run.argv, "down", "--volumes", "--timeout", "10"],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )


async def test_compose_stack_end_to_end(
    compose: tuple[Compose, LocalStack], container_runtime: ContainerRuntime
) -> None:
    """Up; both gateways UP behind HAProxy; `roomgate dev --check`'s client passes; a token
    from the `token` service gets a welcome; `compose stop` ends every container with 0."""
    run, stack = compose
    deadline = time.monotonic() + 90
    while haproxy_servers(stack.ports.lb) != dict.fromkeys(DEFAULT_GATEWAY_IDS, "UP"):
        if time.monotonic() > deadline:
            pytest.fail("gateways not UP behind HAProxy:\n" + run("logs", "--tail", "20").stdout)
        await asyncio.sleep(0.5)

    summary = await asyncio.wait_for(check_client(stack), 60)
    assert "events from the Redis publisher and the HTTP publish API received" in summary

    token = run("run", "--rm", "token", "user", "7", "view_system").stdout.strip()
    async with websockets.connect(stack.ws_url(token), open_timeout=10) as ws:
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert welcome["type"] == "welcome"
    assert welcome["data"]["gateway"] in DEFAULT_GATEWAY_IDS

    ids = run("ps", "--quiet").stdout.split()
    assert len(ids) == 7  # redis, auth, roomauthz, escalation, gw-1, gw-2, haproxy
    run("stop", "--timeout", "30")
    states = container_runtime.engine.docker(
        "inspect", "--format", "{{.Name}} {{.State.ExitCode}} {{.HostConfig.ReadonlyRootfs}}", *ids
    ).stdout.splitlines()
    codes = {line.split()[0]: int(line.split()[1]) for line in states}
    assert codes == dict.fromkeys(codes, 0), codes
    assert all(line.endswith(" true") for line in states), states
