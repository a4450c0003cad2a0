"""The whole stack in containers (``roomgate dev --containers``): Redis and HAProxy from the
infra image, auth, roomauthz, escalation and two gateways from the images ``make images``
built, each with the chart's security context on the host's network. The end-to-end checks
of the process stack (tests/dev/test_stack.py) run against it unchanged, and ``roomgate dev
--containers --check`` passes as a user runs it."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from roomgate_tools.containers import ContainerProcess, ContainerRuntime
from roomgate_tools.stack import LocalStack, StackConfig, StackPorts

from tests.dev.test_stack import (  # the same checks, collected here against containers
    GATEWAYS,
    test_draining_gateway_hands_its_clients_to_the_other,
    test_first_response_sets_cookie_and_reconnects_stick,
    test_lb_log_has_no_token,
    test_lb_sees_both_gateways_up,
    test_publish_reaches_subscribers_on_both_gateways,
    test_without_cookie_connections_are_balanced,
)

pytestmark = pytest.mark.timeout(180)

__all__ = [
    "test_draining_gateway_hands_its_clients_to_the_other",
    "test_first_response_sets_cookie_and_reconnects_stick",
    "test_lb_log_has_no_token",
    "test_lb_sees_both_gateways_up",
    "test_publish_reaches_subscribers_on_both_gateways",
    "test_without_cookie_connections_are_balanced",
]


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, container_runtime: ContainerRuntime
) -> Iterator[LocalStack]:
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("containerstack"),
        ports=StackPorts.free(),
        secrets={
            "ROOMGATE_JWT_HS256_SECRET": secrets.token_urlsafe(48),
            "ROOMGATE_ADMIN_SECRET": secrets.token_urlsafe(32),
            "ROOMGATE_JWT_ISSUER": "roomgate-containers-test",
            "ROOMGATE_JWT_AUDIENCE": "roomgate",
        },
        gateway_ids=GATEWAYS,
        escalation=True,  # all four services in containers
        drain_seconds=0.5,
        containers=container_runtime,
    )
    local = LocalStack(config)
    local.start(timeout=120)
    try:
        yield local
    finally:
        codes = local.stop()
    assert not [c.name for c in local.components if c.process.running]
    assert codes == dict.fromkeys(codes, 0), codes  # every container exits 0 on its stop signal
    listed = container_runtime.engine.docker(
        "ps", "-aq", "--filter", f"label=io.roomgate.stack={container_runtime.stack_id}"
    )
    assert listed.stdout.split() == []  # --rm: nothing left behind


def test_every_part_is_a_container_of_the_built_images(
    stack: LocalStack, container_runtime: ContainerRuntime
) -> None:
    """Seven containers: Redis, HAProxy, auth, roomauthz, escalation, two gateways."""
    names = {c.name: c.process for c in stack.components}
    assert set(names) == {"redis", "haproxy", "auth", "roomauthz", "escalation", *GATEWAYS}
    assert all(isinstance(p, ContainerProcess) and p.running for p in names.values())
    images = {name: p.image for name, p in names.items() if isinstance(p, ContainerProcess)}
    assert images["auth"] == container_runtime.images["auth"]
    assert images[GATEWAYS[0]] == images[GATEWAYS[1]] == container_runtime.images["gateway"]
    inspect = container_runtime.engine.docker(
        "inspect",
        "--format",
        "{{.HostConfig.ReadonlyRootfs}} {{.Config.User}} {{.HostConfig.CapDrop}}",
        *(p.container for p in names.values() if isinstance(p, ContainerProcess)),
    ).stdout.splitlines()
    assert len(inspect) == 7
    for line in inspect:
        read_only, user, caps = line.split(" ", 2)
        assert read_only == "true" and user in ("10001:10001", "999:999") and "ALL" in caps


def _stack_containers(runtime: ContainerRuntime) -> set[str]:
    listed = runtime.engine.docker("ps", "-aq", "--filter", "label=io.roomgate.stack")
    return set(listed.stdout.split())


def test_dev_containers_check_exits_zero(
    tmp_path: Path, container_runtime: ContainerRuntime
) -> None:
    """`roomgate dev --containers --check`: its own container stack on free ports, one
    client through HAProxy, events from Redis and the HTTP API, every container gone after."""
    before = _stack_containers(container_runtime)
    roomgate = Path(sys.executable).parent / "roomgate"
    env = {
        **os.environ,
        **container_runtime.engine.env,  # this session's daemon (DOCKER_HOST)
        "ROOMGATE_DEV_DIR": str(tmp_path / "dev"),
    }
    result = subprocess.run(
        [str(roomgate), "dev", "--containers", "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].startswith("OK "), result.stdout
    assert _stack_containers(container_runtime) == before


def test_killed_runner_leaves_no_container(
    tmp_path: Path, container_runtime: ContainerRuntime
) -> None:
    """SIGKILL of `roomgate dev --containers` itself: the kernel's SIGTERM reaches each
    attached `docker run`, which forwards it; every container stops and is removed (HAProxy
    too: it runs under docker-init, since as PID 1 it would ignore SIGTERM)."""
    before = _stack_containers(container_runtime)
    roomgate = Path(sys.executable).parent / "roomgate"
    env = {
        **os.environ,
        **container_runtime.engine.env,
        "ROOMGATE_DEV_DIR": str(tmp_path / "dev"),
    }
    runner = subprocess.Popen(
        [str(roomgate), "dev", "--containers", "--free-ports", "--no-escalation", "-q"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert runner.stdout is not None
        output = []
        for line in runner.stdout:
            output.append(line)
            if "ready in" in line:
                break
        else:
            pytest.fail("the runner exited before ready:\n" + "".join(output))
        started = _stack_containers(container_runtime) - before
        assert len(started) == 6  # redis, auth, roomauthz, gw-1, gw-2, haproxy
        runner.kill()
        runner.wait(10)
        deadline = time.monotonic() + 60
        while _stack_containers(container_runtime) & started:
            assert time.monotonic() < deadline, "containers outlived their runner"
            time.sleep(0.5)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(10)
        if runner.stdout is not None:
            runner.stdout.close()
