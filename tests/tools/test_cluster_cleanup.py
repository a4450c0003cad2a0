"""The test cluster's cleanup (roomgate_tools.cluster._kill_leftovers) without a cluster: it
kills what names the state directory and spares the cluster's own commands. Killing those
once stopped `make cluster-down` halfway (the runner's cleanup killed the `down` waiting for
it) and left the bridge behind."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from roomgate_tools.cluster import _kill_leftovers

SLEEP = "import time; time.sleep(60)"


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", SLEEP, *args])


def test_leftovers_die_and_the_cluster_commands_live(tmp_path: Path) -> None:
    workdir = tmp_path / "cluster"
    workdir.mkdir()
    component = _spawn(f"--data-dir={workdir}/etcd")  # a component naming the state dir
    command = _spawn("-m", "roomgate_tools.cluster", "down", "--dir", str(workdir))
    stranger = _spawn(f"--data-dir={tmp_path}/elsewhere")
    try:
        time.sleep(0.2)  # their argv is in /proc once exec'd
        _kill_leftovers(workdir)
        assert component.wait(timeout=10) == -9
        time.sleep(0.2)
        assert command.poll() is None, "the cluster's own command was killed"
        assert stranger.poll() is None, "a process of another directory was killed"
    finally:
        for proc in (component, command, stranger):
            proc.kill()
            proc.wait()
