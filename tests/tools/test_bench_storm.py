"""The reconnect-storm benchmark's harness, small: clients dropped at once come back through
HAProxy and recover everything published meanwhile, with and without jitter (a check of the
harness and of recovery through the load balancer, not of speed)."""

from __future__ import annotations

import argparse

import pytest
from roomgate_tools.bench import storm


@pytest.mark.timeout(180)
async def test_every_client_comes_back_recovered_with_nothing_lost() -> None:
    args = argparse.Namespace(
        clients=40, jitter_ms=[0, 300], missed=5, concurrency=20, within=60.0, json=False
    )
    rounds = await storm._main(args)
    assert [r.jitter_ms for r in rounds] == [0, 300]
    for r in rounds:
        assert (r.clients, r.missed) == (40, 5)
        assert (r.not_recovered, r.errors, r.lost, r.duplicates, r.dropped) == (0, 0, 0, 0, 0)
        assert r.seconds > 0
        assert r.connects_per_s > 0
        # both gateways took clients (HAProxy balances), and auth verified every token
        assert r.cpu_s["gw-1"] > 0
        assert r.cpu_s["gw-2"] > 0
        assert r.cpu_s["auth"] > 0
    assert rounds[1].seconds >= 0.3 * 0.5  # the jitter spread the reconnects out
