"""A real Kubernetes control plane on loopback for tests and `make kube-up`: etcd and
kube-apiserver as local processes, the way controller-runtime's envtest runs them.

No kubelet, scheduler or controller-manager: Deployments never get pods or status,
namespaces never finish terminating, nothing is garbage-collected, no HPA acts. What works
is everything the API server does itself: discovery, OpenAPI, schema and CEL validation of
custom resources, RBAC, admission, the scale and status subresources.

Clients authenticate with a static bearer token (``--token-auth-file``) of user ``admin`` in
``system:masters``; the kubeconfig trusts the API server's self-signed certificate.

Binaries come from ``$ROOMGATE_KUBE_TOOLS`` (set by mk/kube.mk), else the repository's
``.cache/kube-tools/bin`` (``make kube-tools`` builds them), else ``$PATH``. A missing binary
raises ``ProcessError``: the tests fail, never skip.

    python -m roomgate_tools.controlplane up --dir .cache/kube-up   # prints KUBECONFIG=...
    python -m roomgate_tools.controlplane down --dir .cache/kube-up
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from roomgate_tools.procs import ManagedProcess, ProcessError, free_port

REPO_ROOT = Path(__file__).resolve().parents[3]
SERVICE_CIDR = "10.0.0.0/24"


def find_binary(name: str) -> str:
    """Absolute path of etcd, kube-apiserver or helm; ProcessError when missing."""
    candidates = []
    if env_dir := os.environ.get("ROOMGATE_KUBE_TOOLS"):
        candidates.append(Path(env_dir) / name)
    candidates.append(REPO_ROOT / ".cache" / "kube-tools" / "bin" / name)
    for candidate in candidates:
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise ProcessError(
        f"{name} not found (looked in {', '.join(map(str, candidates))} and $PATH): "
        "run `make kube-tools`"
    )


@dataclass(frozen=True)
class KubeAPI:
    """How to reach the running API server."""

    url: str
    token: str
    kubeconfig: Path
    ca_file: Path

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def request(
        self, method: str, path: str, body: object | None = None, *, content_type: str = ""
    ) -> tuple[int, dict[str, Any]]:
        """One API call with the admin token: (HTTP status, decoded JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(  # noqa: S310 - https to our own loopback server
            self.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/json",
                "Content-Type": content_type or "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=30) as resp:  # noqa: S310
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                return exc.code, json.loads(payload or b"{}")
            except json.JSONDecodeError:
                return exc.code, {"message": payload.decode(errors="replace")}


def install_crds(api: KubeAPI, paths: list[Path], timeout: float = 30.0) -> list[str]:
    """Create (or replace) the CRDs in these YAML files and wait until each is Established
    and served. Returns their names."""
    import yaml  # roomauthz's dependency; only needed here

    names = []
    base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            name = doc["metadata"]["name"]
            status, body = api.request("POST", base, doc)
            if status == 409:
                _, current = api.request("GET", f"{base}/{name}")
                doc["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                status, body = api.request("PUT", f"{base}/{name}", doc)
            if status >= 300:
                raise ProcessError(f"CRD {name} refused ({status}): {body.get('message')}")
            names.append(name)
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            _, crd = api.request("GET", f"{base}/{name}")
            conditions = crd.get("status", {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise ProcessError(f"CRD {name} not Established after {timeout}s: {conditions}")
            time.sleep(0.1)
    return names


class ControlPlane:
    """etcd + kube-apiserver on free 127.0.0.1 ports, state in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        detach: bool = False,
        die_with_parent: bool = False,
        address: str = "127.0.0.1",
        pods: bool = False,
    ) -> None:
        """``detach``: outlive this process (kube-up). ``die_with_parent``: own process group
        and SIGTERM when this process dies (the test cluster's runner). ``address``: the one
        IP kube-apiserver listens on and advertises (the test cluster's bridge, so that pods
        reach it through the ``kubernetes`` Service); etcd stays on 127.0.0.1. ``pods``: a
        cluster with a node (roomgate_tools.cluster): pods get service-account tokens and the
        ``kubernetes`` Service an endpoint; without nodes both are off."""
        self.workdir = workdir
        self.detach = detach
        self.die_with_parent = die_with_parent
        self.address = address
        self.pods = pods
        self.etcd: ManagedProcess | None = None
        self.apiserver: ManagedProcess | None = None
        self.api: KubeAPI | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> KubeAPI:
        etcd_bin, apiserver_bin = find_binary("etcd"), find_binary("kube-apiserver")
        self.workdir.mkdir(parents=True, exist_ok=True)
        etcd_client, etcd_peer, secure_port = free_port(), free_port(), free_port()
        try:
            self._start_etcd(etcd_bin, etcd_client, etcd_peer, timeout)
            self.api = self._start_apiserver(apiserver_bin, etcd_client, secure_port, timeout)
        except BaseException:
            self.stop()
            raise
        return self.api

    def stop(self) -> None:
        for proc in (self.apiserver, self.etcd):
            if proc is not None:
                proc.stop(timeout=10)
        self.apiserver = self.etcd = None

    # -- etcd --------------------------------------------------------------------------

    def _start_etcd(self, binary: str, client: int, peer: int, timeout: float) -> None:
        data = self.workdir / "etcd"
        client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        self.etcd = self._process(
            [
                binary,
                "--name=roomgate-test",
                f"--data-dir={data}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=roomgate-test={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            "etcd.log",
        )
        self._wait(
            f"{client_url}/health",
            self.etcd,
            timeout,
            ok=lambda body: json.loads(body).get("health") == "true",
        )

    # -- kube-apiserver ----------------------------------------------------------------

    def _start_apiserver(self, binary: str, etcd_port: int, port: int, timeout: float) -> KubeAPI:
        certs = self.workdir / "certs"
        certs.mkdir(exist_ok=True)
        sa_key, sa_pub = certs / "sa.key", certs / "sa.pub"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sa_key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        sa_pub.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        token = secrets.token_urlsafe(24)
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{token},admin,admin-uid,"system:masters"\n')
        tokens.chmod(0o600)
        url = f"https://{self.address}:{port}"
        self.apiserver = self._process(
            [
                binary,
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--cert-dir={certs}",
                f"--secure-port={port}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                "--authorization-mode=RBAC",
                f"--token-auth-file={tokens}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                f"--disable-admission-plugins={'' if self.pods else 'ServiceAccount'}",
                f"--service-account-issuer={url}/",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                f"--endpoint-reconciler-type={'lease' if self.pods else 'none'}",
                "--v=0",
            ],
            "kube-apiserver.log",
        )
        self._wait(
            f"{url}/readyz",
            self.apiserver,
            timeout,
            ok=lambda body: body.strip() == "ok",
            token=token,
        )
        ca_file = certs / "apiserver.crt"
        kubeconfig = self.workdir / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "roomgate-test",
                            "cluster": {"server": url, "certificate-authority": str(ca_file)},
                        }
                    ],
                    "users": [{"name": "admin", "user": {"token": token}}],
                    "contexts": [
                        {
                            "name": "roomgate-test",
                            "context": {"cluster": "roomgate-test", "user": "admin"},
                        }
                    ],
                    "current-context": "roomgate-test",
                },
                indent=2,
            )
        )
        kubeconfig.chmod(0o600)
        return KubeAPI(url=url, token=token, kubeconfig=kubeconfig, ca_file=ca_file)

    # -- helpers -----------------------------------------------------------------------

    def _process(self, argv: list[str], log_name: str) -> ManagedProcess:
        proc = ManagedProcess(
            argv, log_path=self.workdir / log_name, cwd=self.workdir, detached=self.die_with_parent
        )
        if self.detach:
            # `kube-up`: outlive this Python process (kube-down stops them by pid).
            log = proc.log_path.open("ab")
            proc.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                start_new_session=True,
            )  # fmt: skip
            log.close()
        else:
            proc.start()
        return proc

    @staticmethod
    def _wait(url, proc, timeout, *, ok, token: str = "") -> None:  # type: ignore[no-untyped-def]
        context = ssl._create_unverified_context()  # noqa: S323 - readiness poll only
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if not proc.running:
                raise ProcessError(
                    f"{Path(proc.argv[0]).name} exited ({proc.proc.returncode}):\n"
                    + proc.output()[-4000:]
                )
            req = urllib.request.Request(url)  # noqa: S310
            if token:
                req.add_header("Authorization", f"Bearer {token}")
            try:
                with urllib.request.urlopen(req, context=context, timeout=2) as resp:  # noqa: S310
                    body = resp.read().decode()
                    if ok(body):
                        return
                    last = body
            except (OSError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise ProcessError(
            f"{url} not ready after {timeout}s ({last[:500]}):\n" + proc.output()[-4000:]
        )


# -- kube-up / kube-down ---------------------------------------------------------------


def _up(workdir: Path) -> int:
    state = workdir / "state.json"
    if state.exists():
        print(f"already up: {state} (run kube-down first)", file=sys.stderr)
        return 1
    plane = ControlPlane(workdir, detach=True)
    api = plane.start()
    pids = [p.proc.pid for p in (plane.etcd, plane.apiserver) if p and p.proc]
    state.write_text(json.dumps({"pids": pids, **{k: str(v) for k, v in asdict(api).items()}}))
    print(f"kube-apiserver: {api.url}\nexport KUBECONFIG={api.kubeconfig}")
    return 0


def _down(workdir: Path) -> int:
    state = workdir / "state.json"
    if not state.exists():
        print("not up")
        return 0
    for pid in reversed(json.loads(state.read_text())["pids"]):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(workdir)
    print("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m roomgate_tools.controlplane")
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=REPO_ROOT / ".cache" / "kube-up")
    args = parser.parse_args(argv)
    return _up(args.dir) if args.action == "up" else _down(args.dir)


if __name__ == "__main__":
    sys.exit(main())
