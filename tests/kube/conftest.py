"""Helpers of the chart tests: the Helm and kubeconform binaries (built by `make kube-tools`;
missing ones fail the tests), the values matrix, and rendering."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from roomgate_tools.controlplane import REPO_ROOT, find_binary

CHART = REPO_ROOT / "charts" / "roomgate"
VALUES_DIR = Path(__file__).parent / "values"
KUBE_TOOLS = Path(os.environ.get("ROOMGATE_KUBE_TOOLS_DIR", REPO_ROOT / ".cache" / "kube-tools"))

# name -> values files; every case is linted, rendered and validated.
MATRIX: dict[str, list[Path]] = {
    "defaults": [],
    "external-redis": [VALUES_DIR / "external-redis.yaml"],
    "sentinel": [VALUES_DIR / "sentinel.yaml"],
    "gateway-api": [VALUES_DIR / "gateway-api.yaml"],
    "hpa-operator-off": [VALUES_DIR / "hpa.yaml"],
    "networkpolicy": [VALUES_DIR / "networkpolicy.yaml"],
    "production-example": [CHART / "values-production.yaml"],
}


def kube_tool_dir(name: str) -> Path:
    """.cache/kube-tools/schemas or crds; a missing one fails the test."""
    path = KUBE_TOOLS / name
    if not path.is_dir():
        pytest.fail(f"{path} is missing: run `make kube-tools`")
    return path


@pytest.fixture(scope="session")
def helm() -> str:
    return find_binary("helm")


@pytest.fixture(scope="session")
def kubeconform() -> str:
    return find_binary("kubeconform")


def run(argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(argv[:4])}... exited {proc.returncode}:\n{proc.stderr}{proc.stdout}"
        )
    return proc.stdout if check else proc.stdout + proc.stderr


def render(helm: str, values: Sequence[Path] = (), *sets: str, namespace: str = "roomgate") -> str:
    argv = [helm, "template", "rg", str(CHART), "--namespace", namespace]
    for v in values:
        argv += ["-f", str(v)]
    for s in sets:
        argv += ["--set", s]
    return run(argv)


def objects(manifest: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}
