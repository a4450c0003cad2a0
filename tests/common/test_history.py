"""The room-history policy (pure): parsing and first-match-wins lookup by room pattern."""

from __future__ import annotations

import pytest
from roomgate_common.history import HistoryBound, HistoryPolicy


def test_first_matching_pattern_wins() -> None:
    """task-* rooms keep more and longer than agents; everything else falls to `*`."""
    policy = HistoryPolicy.parse("task-*=5000:604800, agents=500:3600, *=1000:86400")
    assert policy.bound("task-42") == HistoryBound(5000, 604800)
    assert policy.bound("agents") == HistoryBound(500, 3600)
    assert policy.bound("agent-7") == HistoryBound(1000, 86400)


def test_no_matching_rule_means_no_history() -> None:
    """Without a catch-all, unmatched rooms keep nothing (no recovery there)."""
    assert HistoryPolicy.parse("alerts=10:60").bound("system") == HistoryBound(0, 0)


@pytest.mark.parametrize("spec", ["", "bad", "*=x:1", "*=1", "=1:1", "*=1:-5"])
def test_bad_specs_are_refused(spec: str) -> None:
    """A malformed setting fails at start with the rule named."""
    with pytest.raises(ValueError, match="history"):
        HistoryPolicy.parse(spec)
