"""Fixtures shared by every test: a real redis-server (started once per session on a free
port, flushed before each test) and a few process helpers."""

from __future__ import annotations

import os

# Tests run gRPC in this process and fork children (redis-server, services): with gRPC's fork
# support on, a child can abort before exec (grpc/grpc#43055, seen here as roomauthz exiting
# -6 "epoll_wait error: Bad file descriptor"). The children exec a fresh interpreter.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from roomgate_tools.controlplane import ControlPlane, KubeAPI
from roomgate_tools.procs import RedisClusterProcess, RedisProcess, RedisSentinelProcess

# Property-based tests: a fixed example budget in CI (`ci`, the default); a long run with
# HYPOTHESIS_PROFILE=long (see docs/security.md). Tests that set max_examples keep theirs.
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One real redis-server for the whole run (AOF off: speed; fault tests start their own)."""
    server = RedisProcess(tmp_path_factory.mktemp("redis"), aof=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis_url(redis_server: RedisProcess) -> str:
    """The URL of the session's Redis, emptied before the test."""
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    await client.aclose()
    return redis_server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server only this test uses (AOF on), for restart and kill tests."""
    server = RedisProcess(tmp_path / "redis", aof=True)
    server.start()
    yield server
    server.stop()


# -- Kubernetes (issue 6) ----------------------------------------------------------------
# A real etcd + kube-apiserver on loopback for the whole session (no controller-manager,
# kubelet or scheduler: see roomgate_tools.controlplane). Built by `make kube-tools`; a
# missing binary FAILS the tests that use it (never a skip).


@pytest.fixture(scope="session")
def kube_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:
    """A real Kubernetes API server: ``.url``, ``.token``, ``.kubeconfig``, ``.ca_file``."""
    plane = ControlPlane(tmp_path_factory.mktemp("kube"))
    api = plane.start()
    yield api
    plane.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcess]:
    """A real 3-master Redis Cluster for the session (``.url`` is ``redis+cluster://``)."""
    cluster = RedisClusterProcess(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinelProcess]:
    """A real redis-server behind a real Redis Sentinel (``.url`` is ``redis+sentinel://``)."""
    sentinel = RedisSentinelProcess(tmp_path_factory.mktemp("redis-sentinel"))
    sentinel.start()
    yield sentinel
    sentinel.stop()
