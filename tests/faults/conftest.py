"""Fault tests on real processes: the ``LocalStack`` of ``roomgate dev`` (redis-server with
AOF, auth, roomauthz, two gateways behind HAProxy with cookie affinity), one per test since
the tests kill and restart its parts; resilient clients from ``roomgate_tools.client``."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from roomgate_common import keys
from roomgate_common.errors import BusUnavailable
from roomgate_common.publisher import Publisher
from roomgate_common.redis_adapter import Redis
from roomgate_tools.client import RoomgateClient
from roomgate_tools.stack import LocalStack, StackConfig, StackPorts

GATEWAYS = ("gw-1", "gw-2")
USER_PERMS = ("view_system", "view_tasks")
ROOMS = ("system", "tasks")


def resilient_clients(
    stack: LocalStack, url: str, count: int, first_user: int
) -> list[RoomgateClient]:
    """``count`` resilient clients (users ``first_user``…), each in ``ROOMS``, reconnecting
    fast (50 ms to 1 s) so that a fault test does not wait on back-off."""
    return [
        RoomgateClient(
            url,
            stack.token(str(first_user + i), perms=USER_PERMS),
            rooms=ROOMS,
            name=f"c{i}",
            backoff_min=0.05,
            backoff_max=1.0,
        )
        for i in range(count)
    ]


def _config(state_dir: Path) -> StackConfig:
    return StackConfig(
        state_dir=state_dir,
        ports=StackPorts.free(),
        secrets={
            "ROOMGATE_JWT_HS256_SECRET": secrets.token_urlsafe(48),
            "ROOMGATE_ADMIN_SECRET": secrets.token_urlsafe(32),
            "ROOMGATE_JWT_ISSUER": "roomgate-faults",
            "ROOMGATE_JWT_AUDIENCE": "roomgate",
        },
        gateway_ids=GATEWAYS,
        escalation=False,
        drain_seconds=0.5,
        aof=True,
        log_level="WARNING",
    )


@contextlib.contextmanager
def _running(state_dir: Path) -> Iterator[LocalStack]:
    stack = LocalStack(_config(state_dir))
    stack.start(timeout=60)
    try:
        yield stack
    finally:
        stack.stop()
        stack.kill()  # anything that did not stop (never expected)


@pytest.fixture
def local_stack(tmp_path: Path) -> Iterator[LocalStack]:
    """The whole stack as processes, for one test that may kill parts of it."""
    with _running(tmp_path / "stack") as stack:
        yield stack


@pytest.fixture(scope="module")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole stack as processes, for the tests of one module that leave it whole."""
    with _running(tmp_path_factory.mktemp("stack")) as stack:
        yield stack


@dataclass
class Accepted:
    """What publishers were told was accepted, per room: (offset, id); and every refusal."""

    by_room: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # "bus_unavailable", "http_503", ...
    unexpected: list[str] = field(default_factory=list)

    def add(self, room: str, offset: int, id_: str) -> None:
        self.by_room.setdefault(room, []).append((offset, id_))

    def ids(self, room: str) -> list[str]:
        """Accepted ids in room order."""
        return [i for _, i in sorted(self.by_room.get(room, []))]

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.by_room.values())


async def publish_redis(publisher: Publisher, room: str, n: int, accepted: Accepted) -> None:
    try:
        sent = await asyncio.wait_for(publisher.publish(room, "metrics_update", {"n": n}), 10)
    except BusUnavailable:
        accepted.refused.append("bus_unavailable")
        return
    except Exception as exc:  # anything else is a silent-loss risk: report it
        accepted.unexpected.append(f"redis publish: {type(exc).__name__}: {exc}")
        return
    accepted.add(room, sent.offset, sent.id)


async def publish_http(
    http: httpx.AsyncClient, url: str, token: str, room: str, n: int, accepted: Accepted
) -> None:
    try:
        response = await http.post(
            url,
            json={"room": room, "type": "metrics_update", "data": {"n": n, "via": "http"}},
            headers={"Authorization": f"Bearer {token}"},
        )
    except httpx.HTTPError as exc:
        accepted.refused.append(f"http_{type(exc).__name__}")
        return
    if response.status_code == 202:
        body = response.json()
        accepted.add(body["room"], int(body["offset"]), body["id"])
    elif response.status_code == 503:
        accepted.refused.append("http_503")
    else:
        accepted.unexpected.append(f"http {response.status_code}: {response.text[:200]}")


async def history_ids(redis: Redis, room: str) -> list[str]:
    import json

    entries = await redis.xrange(keys.room_history(room))
    return [json.loads(fields[b"m"])["id"] for _, fields in entries]


def assert_exactly_once_in_order(client: Any, room: str, accepted: list[str]) -> None:
    """Every accepted id exactly once, offsets strictly increasing."""
    got = client.ids(room)
    assert len(got) == len(set(got)), f"{client.name}/{room}: duplicates delivered"
    missing = set(accepted) - set(got)
    assert not missing, f"{client.name}/{room}: {len(missing)} accepted messages never arrived"
    offsets = client.offsets(room)
    assert all(a < b for a, b in itertools.pairwise(offsets)), (
        f"{client.name}/{room}: offsets not strictly increasing: {offsets}"
    )
    # In room order: the accepted ids appear in the order of their offsets.
    position = {id_: i for i, id_ in enumerate(got)}
    order = [position[i] for i in accepted]
    assert order == sorted(order), f"{client.name}/{room}: out of order"


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)
