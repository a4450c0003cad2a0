"""``docker kill`` (SIGKILL) of a gateway container while messages flow: the fault test of
the process stack (tests/faults/test_gateway_kill.py) against the container stack, unchanged
(``process.kill()`` of a container is ``docker kill``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from roomgate_tools.containers import ContainerRuntime
from roomgate_tools.stack import LocalStack

from tests.faults.conftest import _config
from tests.faults.test_gateway_kill import (  # collected here against containers
    test_sigkill_gateway_clients_end_with_every_message_once_in_order,
)

pytestmark = pytest.mark.timeout(120)

__all__ = ["test_sigkill_gateway_clients_end_with_every_message_once_in_order"]


@pytest.fixture
def local_stack(tmp_path: Path, container_runtime: ContainerRuntime) -> Iterator[LocalStack]:
    config = _config(tmp_path / "stack")
    config.containers = container_runtime
    stack = LocalStack(config)
    stack.start(timeout=90)
    try:
        yield stack
    finally:
        stack.stop()
        stack.kill()
