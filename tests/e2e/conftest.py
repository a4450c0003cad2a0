"""End-to-end tests on a real single-node cluster (roomgate_tools.cluster; issue 15).

They need root, a few minutes and the images `make images` built, so they run only with
ROOMGATE_E2E=1 (`make e2e`); a plain `make pytest` does not even collect them. Once asked
for, they fail, never skip, when something is missing.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from roomgate_tools.cluster import Cluster, ctr_import
from roomgate_tools.cluster_images import export_images
from roomgate_tools.controlplane import REPO_ROOT, KubeAPI
from roomgate_tools.images import chart_images

if os.environ.get("ROOMGATE_E2E") != "1":
    collect_ignore_glob = ["test_*.py"]

WORKDIR = REPO_ROOT / ".cache" / "e2e-cluster"


@dataclass
class RunningCluster:
    api: KubeAPI
    workdir: Path
    socket: Path

    def wait(self, what: str, probe: Any, timeout: float = 120.0) -> Any:
        """Poll ``probe()`` until it returns something truthy; fail with its last answer."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(1)
        logs = "\n".join(
            f"== {log.name}\n{log.read_text(errors='replace')[-1500:]}"
            for log in sorted(
                [
                    *(self.workdir / "logs").glob("*.log"),
                    *(self.workdir / "controlplane").glob("*.log"),
                ]
            )
        )
        pytest.fail(f"{what}: not after {timeout}s\n{logs}")

    def import_images(self, refs: list[str]) -> None:
        for archive in export_images(refs).values():
            ctr_import(self.socket, archive)


@pytest.fixture(scope="session")
def cluster() -> Iterator[RunningCluster]:
    """One real cluster for the session, state (and logs) in .cache/e2e-cluster."""
    if WORKDIR.exists():
        shutil.rmtree(WORKDIR)
    node = Cluster(WORKDIR)  # no ingress: Traefik does not build here (mk/kube_cluster.mk)
    try:
        api = node.start()
        yield RunningCluster(
            api=api, workdir=WORKDIR, socket=WORKDIR / "containerd" / "containerd.sock"
        )
    finally:
        node.stop()


@pytest.fixture(scope="session")
def gateway_image() -> str:
    return chart_images().ref("gateway")
