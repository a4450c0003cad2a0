"""How deeply a JSON document nests, measured before it is decoded: pure, no I/O.

Python's ``json`` and msgspec decode recursively; a few kilobytes of ``[[[[...`` raise
``RecursionError`` from inside the decoder (a traceback, an internal error for the peer).
Every service that decodes JSON from outside calls ``too_deep`` first and refuses the
document with its own documented error (``json_too_deep``).

Strings are cut out first (one regular expression, escapes understood), everything but
brackets is deleted (``bytes.translate``), then matched ``[]`` pairs are removed innermost
first, one layer per round, until none is left or the limit is passed: all in C, at most
``max_depth`` rounds, so a 64 KiB document costs well under a millisecond. Brackets left
unmatched count as nesting too (the decoder would recurse into ``[[[[`` before finding that
it never closes). Documents with no more brackets than the limit are answered by two
``bytes.count`` calls. Otherwise malformed JSON is not judged here: the decoder that runs
next reports it.
"""

from __future__ import annotations

import re

MAX_JSON_DEPTH = 32
"""The default bound of every JSON document from outside: arrays and objects nested at most
this deep (``{"a": [1]}`` is depth 2, a scalar depth 0)."""

# One JSON string, escapes included (unrolled: no backtracking). An unterminated string is
# not matched, so the brackets after it count: the document is malformed anyway.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKETS)
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")


def _as_bytes(document: bytes | str) -> bytes:
    return document if isinstance(document, bytes) else document.encode("utf-8", "surrogatepass")


def _opened(data: bytes) -> int:
    return data.count(b"[") + data.count(b"{")


def nesting_depth(document: bytes | str, *, stop_above: int | None = None) -> int:
    """The deepest nesting of arrays/objects in ``document`` (unclosed ones included); with
    ``stop_above``, counting ends as soon as that depth is passed."""
    data = _as_bytes(document)
    if not _opened(data):
        return 0
    brackets = _STRING.sub(b"", data).translate(_AS_SQUARE, _NOT_BRACKETS)
    depth = 0
    while b"[]" in brackets:
        depth += 1
        if stop_above is not None and depth > stop_above:
            return depth
        brackets = brackets.replace(b"[]", b"")
    return depth + brackets.count(b"[")


def too_deep(document: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """True when ``document`` nests arrays/objects more than ``max_depth`` deep."""
    data = _as_bytes(document)
    if _opened(data) <= max_depth:
        return False
    return nesting_depth(data, stop_above=max_depth) > max_depth
