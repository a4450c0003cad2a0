"""The benchmarks' CPU meter: precise enough that a short window never reads zero work."""

from __future__ import annotations

import os
import time

from roomgate_tools.bench import _procstat as procstat


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_millisecond_of_work_is_measured() -> None:
    """1 ms of CPU, well under one 10 ms clock tick, shows as more than zero CPU seconds."""
    readings = []
    started = time.perf_counter()
    for _ in range(20):
        before = procstat.cpu_seconds(os.getpid())
        _spin(0.001)
        readings.append(procstat.cpu_seconds(os.getpid()) - before)
    wall = time.perf_counter() - started
    assert all(r > 0 for r in readings)
    # One thread's CPU cannot exceed the wall time it spun for (10 ms of slack for the clock).
    assert sum(readings) <= wall + 0.01


def test_the_kernel_share_never_exceeds_the_total() -> None:
    """tree_cpu_split gives a total at least as large as its kernel share."""
    _spin(0.02)
    total, system = procstat.tree_cpu_split(os.getpid())
    assert total > 0
    assert 0 <= system <= total + 0.02
