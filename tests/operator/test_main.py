"""`roomgate-operator` fails fast, naming the reason, on bad settings or no credentials."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

OPERATOR = str(Path(sys.executable).parent / "roomgate-operator")


def run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OPERATOR],
        env={**os.environ, "ROOMGATE_HEALTH_LISTEN": "127.0.0.1:0", **env},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )


def test_invalid_setting_names_the_variable(tmp_path: Path) -> None:
    """A reconcile interval of 0 is refused at start, with the variable's name."""
    proc = run(tmp_path, ROOMGATE_RECONCILE_INTERVAL="0", ROOMGATE_KUBECONFIG="/nonexistent")
    assert proc.returncode == 1
    assert "ROOMGATE_RECONCILE_INTERVAL" in proc.stderr


def test_no_credentials_exits_at_once(tmp_path: Path) -> None:
    """Without a usable kubeconfig or service account the operator exits 1 with the reason
    (no retry loop on a configuration error)."""
    proc = run(tmp_path, ROOMGATE_KUBECONFIG=str(tmp_path / "missing"))
    assert proc.returncode == 1
    assert "no Kubernetes credentials" in proc.stderr
    assert "Traceback" not in proc.stderr
