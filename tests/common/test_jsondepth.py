"""The JSON nesting bound (pure): exact depths, strings ignored, never fooled by hostile input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from roomgate_common.jsondepth import MAX_JSON_DEPTH, nesting_depth, too_deep

CASES = [
    (b"1", 0),
    (b'"[[[{{{"', 0),
    (b"[]", 1),
    (b'{"a": [1]}', 2),
    (b'{"a": {"b": {"c": []}}}', 4),
    (b"[[], [[]], []]", 3),
    (rb'["\"[[[", "\\", [[]]]', 3),
    (rb'"\\\\"[[]]', 2),  # an escaped backslash ends the string: the brackets count
    (b"[[[[", 4),  # unclosed: the decoder would recurse into them
    (b"]]]", 0),
    ('{"é": ["ü"]}', 2),
]


@pytest.mark.parametrize(("document", "depth"), CASES)
def test_depth_of_examples(document: bytes | str, depth: int) -> None:
    """nesting_depth is exact on values, bytes and str alike."""
    assert nesting_depth(document) == depth
    if isinstance(document, bytes):
        assert nesting_depth(document.decode()) == depth


def test_limit_is_inclusive() -> None:
    """Exactly MAX_JSON_DEPTH levels pass; one more is too deep."""
    ok = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert not too_deep(ok)
    assert too_deep(b"[" + ok + b"]")
    assert too_deep(b"{" * 100_000)


def test_huge_depth_stops_early() -> None:
    """With stop_above the answer is limit+1, whatever the real depth."""
    assert nesting_depth(b"[" * 1_000_000 + b"]" * 1_000_000, stop_above=10) == 11


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\x00é'),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(alphabet='[]{}"\\k'), inner, max_size=4)
    ),
    max_leaves=40,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@given(json_values, st.booleans())
def test_depth_matches_the_decoded_value(value: Any, as_bytes: bool) -> None:
    """For any JSON document the measured depth is the depth of the decoded value."""
    text = json.dumps(value, ensure_ascii=False)
    document: bytes | str = text.encode() if as_bytes else text
    assert nesting_depth(document) == _depth(value)
    assert too_deep(document, 3) == (_depth(value) > 3)


@given(st.binary(max_size=512))
def test_any_bytes_never_crash(document: bytes) -> None:
    """Arbitrary bytes give a depth, never an exception; too_deep agrees with it."""
    depth = nesting_depth(document)
    assert depth >= 0
    assert too_deep(document, 5) == (depth > 5)
