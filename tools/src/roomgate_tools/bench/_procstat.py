"""What the benchmarks measure with: CPU time and resident memory of a server process (and its
children), read from /proc, and percentiles.

Linux only, which is where the benchmark runs. Threads are included in a process's figures;
child processes are added so that a server that forks workers is measured whole.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_CPUCLOCK_SCHED = 2  # linux/include/linux/posix-timers.h: the process-wide sched_clock clock


def _children(pid: int) -> list[int]:
    found: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        tasks = list(task_dir.iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    tree = [pid]
    index = 0
    while index < len(tree):
        tree.extend(_children(tree[index]))
        index += 1
    return tree


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of one process (all threads), from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0, 0.0
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / _TICKS, int(fields[12]) / _TICKS


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads, live and exited), in
    nanoseconds of precision.

    /proc/<pid>/stat counts in clock ticks (10 ms here): a short measured window could read 0.0
    for a process that did work. The process's CPU-time clock (what clock_getcpuclockid(3)
    returns: ``~pid << 3 | CPUCLOCK_SCHED``) is the scheduler's own ns account, the current
    slice included. Falls back to the ticks where the clock cannot be read.
    """
    try:
        return time.clock_gettime((~pid << 3) | _CPUCLOCK_SCHED)
    except OSError:
        return sum(cpu_times(pid))


def rss_bytes(pid: int) -> int:
    """Resident set size of one process, from /proc/<pid>/status (VmRSS)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(p) for p in process_tree(pid))


def tree_cpu_split(pid: int) -> tuple[float, float]:
    """(total, system) CPU seconds of ``pid`` and its descendants: the total at nanosecond
    precision (``cpu_seconds``), the kernel share in clock ticks (only /proc/<pid>/stat splits
    user from system)."""
    tree = process_tree(pid)
    return sum(cpu_seconds(p) for p in tree), sum(cpu_times(p)[1] for p in tree)


def tree_rss_bytes(pid: int) -> int:
    return sum(rss_bytes(p) for p in process_tree(pid))


def self_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def pin_tree(pid: int, cpus: set[int]) -> None:
    """Run ``pid``, every thread of it and its descendants on ``cpus`` only."""
    for process in process_tree(pid):
        try:
            tasks = [int(t.name) for t in Path(f"/proc/{process}/task").iterdir()]
        except OSError:
            continue
        for task in tasks:
            try:
                os.sched_setaffinity(task, cpus)
            except OSError:
                continue


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values; 0.0 for none."""
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]
