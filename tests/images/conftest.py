"""Fixtures of the image tests: a Docker engine (the running daemon, else a dockerd of our
own for the session: roomgate_tools.engine), the images ``make images`` built (a missing one
FAILS: run `make images`), the container stack of ``roomgate dev --containers``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from roomgate_tools.containers import ContainerRuntime
from roomgate_tools.engine import DockerEngine, EngineError
from roomgate_tools.images import INFRA_REF, chart_images


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    try:
        engine = DockerEngine.ensure()
    except EngineError as exc:
        pytest.fail(f"no Docker engine: {exc}")
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def container_runtime(docker_engine: DockerEngine) -> Iterator[ContainerRuntime]:
    """The chart's image references and the infra image, every one present."""
    runtime = ContainerRuntime(docker_engine, chart_images().refs, INFRA_REF)
    missing = runtime.missing()
    if missing:
        pytest.fail(f"images missing: {', '.join(missing)}: run `make images`")
    yield runtime
    runtime.remove_all()
