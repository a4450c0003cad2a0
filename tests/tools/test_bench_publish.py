"""The publish benchmark's harness: a short real run against the gateway, Centrifugo and the
naive Starlette floor that
checks each publish call succeeds and the servers' CPU is measured (a check of the harness,
not of speed)."""

from __future__ import annotations

import argparse

import pytest
from roomgate_tools.bench import publish


@pytest.mark.timeout(120)
@pytest.mark.parametrize("batch", [1, 10])
async def test_every_server_is_measured_per_publish_call(batch: int) -> None:
    """Every server answers every publish (single or batched); CPU per event is positive, and
    only the gateway has peers (auth, roomauthz) whose CPU is counted beside its own (it
    may be nil: the gateway keeps verified tokens and decisions)."""
    args = argparse.Namespace(duration=0.5, publishers=2, only=None, json=False, batch=batch)
    figures = {f.name: f for f in await publish._main(args)}
    assert set(figures) == {"gateway", "centrifugo", "starlette"}
    for f in figures.values():
        assert f.calls > 0
        assert f.server_cpu_s > 0
        assert f.cpu_ms_per_call > 0
        assert 0 < f.p50_ms <= f.p99_ms
        assert f.calls % batch == 0
    assert figures["gateway"].peers == 2
    for name in ("centrifugo", "starlette"):
        assert (figures[name].peers, figures[name].peers_cpu_s) == (0, 0)
