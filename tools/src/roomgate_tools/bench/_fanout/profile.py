"""Sampling the server under test with py-spy while it is measured (``--profile``).

py-spy (``pip install py-spy``) attaches to the server's pid without stopping it
(``--nonblocking``) and writes collapsed stacks (``--format raw``); ``summarize`` turns them
into the functions that took the most samples, by themselves (self) and with what they
called (inclusive). The samples exclude idle time (the event loop waiting in epoll).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def find_py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


class Sampler:
    """``py-spy record`` of one process for ``seconds``; ``stop()`` waits for its file."""

    def __init__(self, py_spy: str, pid: int, seconds: float, output: Path, rate: int = 200):
        self.output = output
        self._proc = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid", str(pid),
                "--duration", str(max(1, round(seconds))),
                "--rate", str(rate),
                "--format", "raw",
                "--nonblocking",
                "--output", str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip

    def stop(self, wait: float = 15.0) -> str:
        """Wait for py-spy to write its file; returns its error output, if any."""
        try:
            _out, err = self._proc.communicate(timeout=wait)
        except subprocess.TimeoutExpired:
            self._proc.terminate()
            _out, err = self._proc.communicate(timeout=5)
        return "" if self.output.exists() else err.decode(errors="replace").strip()


@dataclass(frozen=True)
class Profile:
    samples: int
    self_share: list[tuple[str, float]]
    inclusive_share: list[tuple[str, float]]


def _function(frame: str) -> str:
    """``send (websockets/protocol.py:123)`` -> ``send (websockets/protocol.py)``."""
    return _LINE.sub(")", frame.strip())


def summarize(collapsed: str, top: int = 15) -> Profile:
    """The functions with the most samples in py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";")]
        # The first frame names the thread/process: not a function.
        if frames and frames[0].startswith(("process ", "thread ")):
            frames = frames[1:]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return Profile(0, [], [])
    return Profile(
        samples=total,
        self_share=[(name, n / total) for name, n in own.most_common(top)],
        inclusive_share=[(name, n / total) for name, n in inclusive.most_common(top * 2)],
    )
