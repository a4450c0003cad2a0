"""The images ``make images`` built, run the way the chart runs them: each service's pod
spec is taken from ``helm template`` (its image reference, security context, emptyDirs, env,
terminationGracePeriodSeconds) and turned into ``docker run`` flags; the container must come
up, answer its health check, and exit 0 on SIGTERM within its grace period."""

from __future__ import annotations

import json
import secrets
import shutil
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from roomgate_tools.containers import ContainerRuntime
from roomgate_tools.controlplane import REPO_ROOT, KubeAPI, find_binary, install_crds
from roomgate_tools.engine import DockerEngine
from roomgate_tools.images import SERVICES, chart_images, oci_args
from roomgate_tools.procs import RedisProcess, free_port
from roomgate_tools.stack import gateway_service_credential, grpc_serving, http_status

from tests.kube.conftest import by_kind, objects, render

pytestmark = pytest.mark.timeout(180)

NAMESPACE = "roomgate"
GRPC_SERVICES = ("auth", "roomauthz", "escalation")


# ------------------------------------------------------------------------ chart -> docker
@pytest.fixture(scope="module")
def pods() -> dict[str, dict[str, Any]]:
    """service -> the pod spec of its Deployment, as the chart renders it by default."""
    manifest = render(find_binary("helm"), namespace=NAMESPACE)
    deployments = by_kind(objects(manifest), "Deployment")
    return {svc: deployments[f"rg-roomgate-{svc}"]["spec"]["template"]["spec"] for svc in SERVICES}


def security_flags(pod: dict[str, Any]) -> list[str]:
    """The pod's and its container's securityContext as docker flags; a key this function
    does not translate fails the test (the chart must not promise what is not exercised)."""
    container = pod["containers"][0]
    merged = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    flags: list[str] = []
    handled = {"fsGroup", "seccompProfile"}  # no volume to chown; docker's default seccomp
    assert merged.get("runAsNonRoot") is True
    handled.add("runAsNonRoot")
    uid, gid = merged["runAsUser"], merged["runAsGroup"]
    assert uid != 0
    flags += ["--user", f"{uid}:{gid}"]
    handled |= {"runAsUser", "runAsGroup"}
    if merged.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    handled.add("readOnlyRootFilesystem")
    if merged.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    handled.add("allowPrivilegeEscalation")
    caps = merged.get("capabilities", {})
    for cap in caps.get("drop", []):
        flags += ["--cap-drop", cap]
    assert not caps.get("add"), caps
    handled.add("capabilities")
    assert merged.get("seccompProfile", {}).get("type") in (None, "RuntimeDefault")
    assert set(merged) <= handled, set(merged) - handled
    return flags


def volume_flags(pod: dict[str, Any]) -> list[str]:
    """emptyDir mounts become tmpfs (with the sizeLimit); the defaults mount nothing else."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    flags = []
    for mount in pod["containers"][0].get("volumeMounts", []):
        volume = volumes[mount["name"]]
        assert "emptyDir" in volume, f"not an emptyDir: {volume}"
        size = (volume["emptyDir"] or {}).get("sizeLimit", "64Mi").replace("Mi", "m")
        flags += ["--tmpfs", f"{mount['mountPath']}:size={size}"]
    return flags


def chart_env(pod: dict[str, Any], overrides: dict[str, str]) -> dict[str, str]:
    """The container's env: literal values as rendered, ``valueFrom`` ones from
    ``overrides`` (secrets, the pod name), listen addresses and peers replaced by loopback
    ones (the host's network is shared)."""
    env: dict[str, str] = {}
    for item in pod["containers"][0].get("env", []):
        name = item["name"]
        if name in overrides:
            env[name] = overrides[name]
        elif "value" in item:
            env[name] = str(item["value"])
        elif item["valueFrom"].get("fieldRef"):
            env[name] = {"metadata.name": "image-test-0", "metadata.namespace": NAMESPACE}[
                item["valueFrom"]["fieldRef"]["fieldPath"]
            ]
        else:
            pytest.fail(f"{name}: no test value for {item['valueFrom']}")
    return env


class Container:
    """One ``docker run -d`` of a chart pod; ``stop()`` measures the SIGTERM exit."""

    def __init__(self, engine: DockerEngine, name: str) -> None:
        self.engine = engine
        self.name = name

    def run(self, image: str, flags: list[str], env: dict[str, str]) -> None:
        args = ["run", "-d", "--name", self.name, "--network", "host", *flags]
        for key in sorted(env):
            args += ["--env", key]
        self.engine.docker(*args, image, extra_env=env)

    def running(self) -> bool:
        return self.state()["Running"] is True

    def state(self) -> dict[str, Any]:
        out = self.engine.docker("inspect", "--format", "{{json .State}}", self.name).stdout
        return dict(json.loads(out))

    def logs(self) -> str:
        proc = self.engine.docker("logs", "--tail", "40", self.name, check=False)
        return proc.stdout + proc.stderr

    def wait_until(self, ready: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.running():
                pytest.fail(f"{self.name} exited {self.state()['ExitCode']}:\n{self.logs()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} not healthy in {timeout}s:\n{self.logs()}")
            time.sleep(0.2)

    def stop(self, grace: int) -> tuple[int, float]:
        """``docker stop -t grace`` (SIGTERM, SIGKILL at the deadline, like the kubelet):
        (exit code, seconds)."""
        started = time.monotonic()
        self.engine.docker("stop", "--time", str(grace), self.name, timeout=grace + 30)
        return int(self.state()["ExitCode"]), time.monotonic() - started

    def remove(self) -> None:
        self.engine.docker("rm", "-f", self.name, check=False)


@pytest.fixture
def container(docker_engine: DockerEngine, request: pytest.FixtureRequest) -> Iterator[Container]:
    box = Container(
        docker_engine, f"roomgate-test-{request.node.name[-20:]}-{secrets.token_hex(3)}"
    )
    box.name = "".join(c if c.isalnum() or c in "-_." else "-" for c in box.name)
    yield box
    box.remove()


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("redis"), aof=False)
    server.start()
    yield server
    server.stop()


_GATEWAY_KEY, _SERVICE_KEYS = gateway_service_credential()
SECRETS = {
    "ROOMGATE_REDIS_PASSWORD": "",  # the URL is the test's Redis, without one
    "ROOMGATE_JWT_HS256_SECRET": secrets.token_urlsafe(48),
    "ROOMGATE_ADMIN_SECRET": secrets.token_urlsafe(32),
    # The gateway's escalation credential and auth's record of it (the chart generates both).
    "ROOMGATE_ESCALATION_API_KEY": _GATEWAY_KEY,
    "ROOMGATE_SERVICE_KEYS": _SERVICE_KEYS,
}


# ------------------------------------------------------------------------------ tests
def test_chart_renders_the_references_make_images_tagged(
    pods: dict[str, dict[str, Any]], container_runtime: ContainerRuntime
) -> None:
    """Every image the chart's Deployments name by default is one `make images` built."""
    rendered = {svc: pod["containers"][0]["image"] for svc, pod in pods.items()}
    assert rendered == chart_images().refs
    for ref in rendered.values():
        assert container_runtime.engine.has_image(ref), ref


@pytest.mark.parametrize("svc", SERVICES)
def test_image_metadata(
    svc: str, docker_engine: DockerEngine, container_runtime: ContainerRuntime
) -> None:
    """Numeric non-root user, exec-form entrypoint of the console script, SIGTERM, no
    volumes, and OCI labels of this checkout (version = the chart's appVersion)."""
    ref = container_runtime.images[svc]
    config = json.loads(
        docker_engine.docker("image", "inspect", "--format", "{{json .Config}}", ref).stdout
    )
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == [f"/app/.venv/bin/roomgate-{svc}"]
    assert config["StopSignal"] == "SIGTERM"
    assert not config.get("Volumes")
    assert config["Env"] and "PYTHONDONTWRITEBYTECODE=1" in config["Env"]
    labels = config["Labels"]
    expected = oci_args(chart_images().tag)
    assert labels["org.opencontainers.image.version"] == expected["VERSION"]
    assert labels["org.opencontainers.image.source"] == expected["SOURCE"]
    assert labels["org.opencontainers.image.created"] == expected["CREATED"]
    assert labels["org.opencontainers.image.revision"] == expected["REVISION"], (
        "the image is of another commit: run `make images`"
    )


INSPECT = r"""
import importlib.metadata as md, importlib.util, json, pathlib, shutil, sys, sysconfig
site = pathlib.Path(sysconfig.get_paths()["purelib"])
sources = [p for p in site.rglob("*.py")]
missing = [str(p) for p in sources if not pathlib.Path(importlib.util.cache_from_source(str(p))).exists()]
print(json.dumps({
    "python": sys.version.split()[0],
    "dists": sorted(d.metadata["Name"] for d in md.distributions()),
    "sources": len(sources),
    "uncompiled": missing[:20],
    "tools": [t for t in ("gcc", "cc", "pip", "uv") if shutil.which(t)],
}))
"""


def _workspace_dependencies(svc: str) -> set[str]:
    """The Roomgate distributions ``services/<svc>/pyproject.toml`` depends on."""
    project = tomllib.loads((REPO_ROOT / "services" / svc / "pyproject.toml").read_text())[
        "project"
    ]
    return {d for d in project["dependencies"] if d.startswith("roomgate-")}


@pytest.mark.parametrize("svc", SERVICES)
def test_image_holds_only_its_distribution_byte_compiled(
    svc: str, docker_engine: DockerEngine, container_runtime: ContainerRuntime
) -> None:
    """Inside the image (read-only, as its user): Python 3.11, roomgate-<svc> and
    the Roomgate distributions it declares (roomgate-common; the gateway also roomauthz's
    pure events) but no other, every module byte-compiled, no
    compiler, pip or uv on PATH."""
    out = docker_engine.docker(
        "run", "--rm", "--read-only", "--network", "none", "--cap-drop", "ALL",
        "--entrypoint", "/app/.venv/bin/python", container_runtime.images[svc], "-c", INSPECT,
    ).stdout  # fmt: skip
    facts = json.loads(out)
    assert facts["python"].startswith("3.11.")
    ours = {d for d in facts["dists"] if d.startswith("roomgate")}
    assert ours == {f"roomgate-{svc}", *_workspace_dependencies(svc)}
    assert facts["sources"] > 100
    assert facts["uncompiled"] == []
    assert facts["tools"] == []


def _grpc_env(
    svc: str, pod: dict[str, Any], redis: RedisProcess
) -> tuple[dict[str, str], Callable[[], bool]]:
    port = free_port()
    listen = "ROOMGATE_ESCALATION_LISTEN" if svc == "escalation" else "ROOMGATE_LISTEN"
    env = chart_env(
        pod,
        {
            listen: f"127.0.0.1:{port}",
            "ROOMGATE_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
            "ROOMGATE_REDIS_URL": redis.url,
            **SECRETS,
        },
    )
    return env, lambda: grpc_serving(f"127.0.0.1:{port}")


@pytest.mark.parametrize("svc", GRPC_SERVICES)
def test_grpc_service_runs_under_the_chart_security_context(
    svc: str,
    pods: dict[str, dict[str, Any]],
    container: Container,
    container_runtime: ContainerRuntime,
    module_redis: RedisProcess,
) -> None:
    """Read-only root, non-root, no capabilities, /tmp a tmpfs: the gRPC health check
    answers SERVING, and SIGTERM ends it with 0 within terminationGracePeriodSeconds."""
    pod = pods[svc]
    env, ready = _grpc_env(svc, pod, module_redis)
    container.run(container_runtime.images[svc], security_flags(pod) + volume_flags(pod), env)
    container.wait_until(ready)
    grace = int(pod["terminationGracePeriodSeconds"])
    code, seconds = container.stop(grace)
    print(f"{svc}: SIGTERM -> exit {code} in {seconds:.2f}s (grace {grace}s)")
    assert code == 0, container.logs()
    assert seconds < grace


def test_gateway_runs_under_the_chart_security_context(
    pods: dict[str, dict[str, Any]],
    container: Container,
    container_runtime: ContainerRuntime,
    module_redis: RedisProcess,
) -> None:
    """The gateway: /healthz 200 and /readyz answers; SIGTERM (it drains) ends it with 0
    within terminationGracePeriodSeconds."""
    pod = pods["gateway"]
    port = free_port()
    env = chart_env(
        pod,
        {
            "ROOMGATE_LISTEN": f"127.0.0.1:{port}",
            "ROOMGATE_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
            "ROOMGATE_REDIS_URL": module_redis.url,
            # No peers in this test: loopback ports nothing listens on.
            "ROOMGATE_AUTH_ADDR": f"127.0.0.1:{free_port()}",
            "ROOMGATE_ROOMAUTHZ_ADDR": f"127.0.0.1:{free_port()}",
            "ROOMGATE_ESCALATION_ADDR": f"127.0.0.1:{free_port()}",
            **SECRETS,
        },
    )
    container.run(container_runtime.images["gateway"], security_flags(pod) + volume_flags(pod), env)
    base = f"http://127.0.0.1:{port}"
    container.wait_until(lambda: http_status(f"{base}/healthz") == 200)
    assert http_status(f"{base}/readyz") in (200, 503)  # answers (peers are absent here)
    grace = int(pod["terminationGracePeriodSeconds"])
    code, seconds = container.stop(grace)
    print(f"gateway: SIGTERM -> exit {code} in {seconds:.2f}s (grace {grace}s)")
    assert code == 0, container.logs()
    assert seconds < grace


def test_operator_runs_under_the_chart_security_context(
    pods: dict[str, dict[str, Any]],
    container: Container,
    container_runtime: ContainerRuntime,
    kube_apiserver: KubeAPI,
    module_redis: RedisProcess,
    tmp_path: Path,
) -> None:
    """The operator against a real API server (kubeconfig mounted read-only): kopf's
    liveness endpoint answers, SIGTERM ends it with 0 within its grace period."""
    install_crds(
        kube_apiserver, [REPO_ROOT / "charts/roomgate/crds/gatewaypolicies.roomgate.io.yaml"]
    )
    kube = tmp_path / "kube"
    kube.mkdir()
    shutil.copy(kube_apiserver.ca_file, kube / "ca.crt")
    config = json.loads(kube_apiserver.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["certificate-authority"] = "/etc/roomgate/kube/ca.crt"
    (kube / "config").write_text(json.dumps(config))
    for path in (kube, kube / "ca.crt", kube / "config"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # the container's user reads them
    pod = pods["operator"]
    port = free_port()
    env = chart_env(
        pod,
        {
            "ROOMGATE_HEALTH_LISTEN": f"127.0.0.1:{port}",
            "ROOMGATE_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
            "ROOMGATE_REDIS_URL": module_redis.url,
            "ROOMGATE_KUBECONFIG": "/etc/roomgate/kube/config",
            **SECRETS,
        },
    )
    env.setdefault("ROOMGATE_KUBECONFIG", "/etc/roomgate/kube/config")
    mount = ["--mount", f"type=bind,source={kube},target=/etc/roomgate/kube,readonly"]
    container.run(
        container_runtime.images["operator"], security_flags(pod) + volume_flags(pod) + mount, env
    )
    container.wait_until(lambda: http_status(f"http://127.0.0.1:{port}/healthz") == 200, timeout=90)
    grace = int(pod["terminationGracePeriodSeconds"])
    code, seconds = container.stop(grace)
    print(f"operator: SIGTERM -> exit {code} in {seconds:.2f}s (grace {grace}s)")
    assert code == 0, container.logs()
    assert seconds < grace


def test_a_missing_image_fails_loudly(docker_engine: DockerEngine) -> None:
    """The runtime lists what is missing (the fixture then fails, never skips)."""
    runtime = ContainerRuntime(
        docker_engine, {"gateway": "roomgate-test/absent:0"}, "roomgate-test/absent:1"
    )
    assert runtime.missing() == ["roomgate-test/absent:0", "roomgate-test/absent:1"]
