"""A real single-node Kubernetes cluster on this machine for end-to-end tests (issue 15).

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd, kubelet (CNI: the
Debian bridge/host-local/loopback/portmap plugins on a bridge of our own), kube-proxy
(iptables) and CoreDNS run as host processes with all state under one directory; with
``ingress=True``, HAProxy Ingress runs as a pod (roomgate_tools.cluster_ingress). They listen
on 127.0.0.1 or on the cluster's own bridge (``BRIDGE``, ``BRIDGE_IP``; kube-apiserver there
too, so that pods reach it), never on other interfaces.

``up`` starts a *runner* (``python -m roomgate_tools.cluster run``) in its own session; the
runner starts every component with PR_SET_PDEATHSIG (procs.ManagedProcess ``detached=True``),
so when the runner dies, even by SIGKILL, the kernel stops them all. ``down`` stops the
runner and removes the bridge, the iptables chains kube-proxy made and the state directory.
``up`` first clears what a dead earlier cluster left in the same directory.

Binaries come from ``$ROOMGATE_KUBE_TOOLS`` / ``.cache/kube-tools/bin`` (``make cluster-tools``)
or ``$PATH``; a missing one raises ProcessError. Needs root (bridge, iptables, containers).

    python -m roomgate_tools.cluster up --dir .cache/cluster     # prints KUBECONFIG=...
    python -m roomgate_tools.cluster up --ingress ...            # + HAProxy Ingress (its URL)
    python -m roomgate_tools.cluster down --dir .cache/cluster
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from roomgate_tools import cluster_ingress
from roomgate_tools.cluster_images import export_images
from roomgate_tools.controlplane import REPO_ROOT, SERVICE_CIDR, ControlPlane, KubeAPI, find_binary
from roomgate_tools.images import INFRA_REF
from roomgate_tools.procs import ManagedProcess, ProcessError, free_port

BRIDGE = "rgcni0"
BRIDGE_IP = "10.88.0.1"
POD_CIDR = "10.88.0.0/16"
CLUSTER_DNS = BRIDGE_IP
NODE_NAME = "roomgate-node"
PAUSE_IMAGE = "roomgate.local/pause:1"
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins (`make cluster-deps`)
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
UP_TIMEOUT = 180.0
INGRESS_TIMEOUT = 180.0  # on top of UP_TIMEOUT: the infra image's import and the pod's start

PAUSE_C = r"""
#include <signal.h>
#include <unistd.h>
static void stop(int s) { (void)s; _exit(0); }
int main(void) {
    signal(SIGTERM, stop); signal(SIGINT, stop); signal(SIGCHLD, SIG_IGN);
    for (;;) pause();
}
"""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2))


class Cluster:
    """Starts and supervises every component; ``stop`` ends them in reverse order."""

    def __init__(self, workdir: Path, *, ingress: bool = False) -> None:
        """``ingress=True``: also HAProxy Ingress; ``ingress_url`` then reaches it."""
        self.workdir = workdir
        self.ingress = ingress
        self.ingress_url = ""
        self.plane = ControlPlane(
            workdir / "controlplane", die_with_parent=True, address=BRIDGE_IP, pods=True
        )
        self.procs: list[ManagedProcess] = []  # the components after the control plane
        self.env = {"PATH": f"{Path(find_binary('containerd')).parent}:{os.environ['PATH']}"}

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = UP_TIMEOUT) -> KubeAPI:
        deadline = time.monotonic() + timeout
        self.workdir.mkdir(parents=True, exist_ok=True)
        _bridge_up()
        api = self._control_plane(deadline)
        sock = self._containerd(deadline)
        self._pause_image(sock)
        self._kubelet(api.kubeconfig, sock)
        self._kube_proxy(api.kubeconfig)
        self._coredns(api.kubeconfig)
        self._wait_node_ready(api, deadline)
        if self.ingress:
            self._ingress(api, deadline + INGRESS_TIMEOUT)
        return api

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(timeout=10)
        self.procs.clear()
        self.plane.stop()
        _cleanup_host(self.workdir)

    def exited(self) -> ManagedProcess | None:
        """The first component (control plane included) that is no longer running."""
        plane = [p for p in (self.plane.etcd, self.plane.apiserver) if p is not None]
        return next((p for p in (*plane, *self.procs) if not p.running), None)

    # -- components --------------------------------------------------------------------

    def _start(self, argv: list[str], name: str) -> ManagedProcess:
        proc = ManagedProcess(
            argv, log_path=self.workdir / "logs" / f"{name}.log", env=self.env,
            cwd=self.workdir, detached=True,
        )  # fmt: skip
        proc.start()
        self.procs.append(proc)
        return proc

    def _control_plane(self, deadline: float) -> KubeAPI:
        api = self.plane.start(timeout=max(deadline - time.monotonic(), 1))
        certs = self.workdir / "controlplane" / "certs"
        common = [f"--kubeconfig={api.kubeconfig}", "--bind-address=127.0.0.1"]
        self._start(
            [
                find_binary("kube-controller-manager"), *common, f"--secure-port={free_port()}",
                f"--service-account-private-key-file={certs / 'sa.key'}",
                f"--root-ca-file={api.ca_file}", f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-route,-service",
                "--use-service-account-credentials=false", "--leader-elect=false",
            ],
            "kube-controller-manager",
        )  # fmt: skip
        self._start(
            [find_binary("kube-scheduler"), *common, f"--secure-port={free_port()}",
             "--leader-elect=false"],
            "kube-scheduler",
        )  # fmt: skip
        return api

    def _containerd(self, deadline: float) -> Path:
        base = self.workdir / "containerd"
        (base / "root").mkdir(parents=True, exist_ok=True)
        # Without them every pod sandbox fails, retried forever: say so now instead.
        if missing := [p for p in CNI_PLUGINS if not (Path(CNI_BIN_DIR) / p).exists()]:
            raise ProcessError(f"CNI plugins {missing} not in {CNI_BIN_DIR}: make cluster-deps")
        net_d = self.workdir / "cni" / "net.d"
        net_d.mkdir(parents=True, exist_ok=True)
        _write_json(
            net_d / "10-roomgate.conflist",
            {
                "cniVersion": "1.0.0",
                "name": "roomgate",
                "plugins": [
                    {
                        "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
                        "hairpinMode": True,
                        "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR,
                                 "rangeStart": "10.88.1.1", "gateway": BRIDGE_IP}]],
                                 # Service IPs are outside the pod subnet: via the bridge.
                                 "routes": [{"dst": "0.0.0.0/0"}],
                                 "dataDir": str(self.workdir / "cni" / "ipam")},
                    },
                    {"type": "portmap", "capabilities": {"portMappings": True}},
                ],
            },
        )  # fmt: skip
        sock = base / "containerd.sock"
        config = base / "config.toml"
        config.write_text(
            f"""version = 3
root = "{base / "root"}"
state = "{base / "state"}"
disabled_plugins = ["io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{PAUSE_IMAGE}"
[plugins."io.containerd.cri.v1.runtime"]
  # This VM's root lacks CAP_SYS_RESOURCE: no process may lower its oom_score_adj, so the
  # -998 of a sandbox fails in runc init; clamp every container's to containerd's own (0).
  restrict_oom_score_adj = true
[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  BinaryName = "{find_binary("runc")}"
  SystemdCgroup = false
[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["{CNI_BIN_DIR}"]
  conf_dir = "{net_d}"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""
        )
        proc = self._start([find_binary("containerd"), f"--config={config}"], "containerd")
        while not sock.exists():
            if not proc.running or time.monotonic() > deadline:
                raise ProcessError("containerd did not start:\n" + proc.output()[-4000:])
            time.sleep(0.1)
        return sock

    def _pause_image(self, sock: Path) -> None:
        """A pause image from a static C binary: no registry is reachable here."""
        build = self.workdir / "pause"
        build.mkdir(exist_ok=True)
        (build / "pause.c").write_text(PAUSE_C)
        _run("gcc", "-static", "-Os", "-s", "-o", str(build / "pause"), str(build / "pause.c"))
        import_oci_image(build, {"pause": build / "pause"}, PAUSE_IMAGE, ["/pause"])
        ctr_import(sock, build / "image.tar")

    def _kubelet(self, kubeconfig: Path, sock: Path) -> None:
        base = self.workdir / "kubelet"
        base.mkdir(exist_ok=True)
        resolv = base / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\n")
        config = base / "config.json"
        _write_json(
            config,
            {
                "apiVersion": "kubelet.config.k8s.io/v1beta1",
                "kind": "KubeletConfiguration",
                "failCgroupV1": False,
                "failSwapOn": False,
                "cgroupDriver": "cgroupfs",
                "containerRuntimeEndpoint": f"unix://{sock}",
                "address": BRIDGE_IP,
                "port": free_port(),
                "readOnlyPort": 0,
                "healthzBindAddress": "127.0.0.1",
                "healthzPort": free_port(),
                "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
                "authorization": {"mode": "AlwaysAllow"},
                "clusterDNS": [CLUSTER_DNS],
                "clusterDomain": "cluster.local",
                "resolvConf": str(resolv),
                "serializeImagePulls": False,
                "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                                 "imagefs.available": "1%"},
                "imageGCHighThresholdPercent": 100,
                "imageGCLowThresholdPercent": 99,
                "podCIDR": POD_CIDR,
                "maxPods": 110,
                "shutdownGracePeriod": "0s",
                # Not /var/log/pods; /var/log/containers still gets links (_cleanup_host).
                "podLogsDir": str(self.workdir / "pod-logs"),
            },
        )  # fmt: skip
        self._start(
            [
                find_binary("kubelet"), f"--config={config}", f"--kubeconfig={kubeconfig}",
                f"--root-dir={base / 'root'}", f"--cert-dir={base / 'pki'}",
                f"--node-ip={BRIDGE_IP}", f"--hostname-override={NODE_NAME}", "--v=1",
            ],
            "kubelet",
        )  # fmt: skip

    def _kube_proxy(self, kubeconfig: Path) -> None:
        config = self.workdir / "kube-proxy.json"
        _write_json(
            config,
            {
                "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                "kind": "KubeProxyConfiguration",
                "clientConnection": {"kubeconfig": str(kubeconfig)},
                "mode": "iptables",
                "clusterCIDR": POD_CIDR,
                "hostnameOverride": NODE_NAME,
                "bindAddress": BRIDGE_IP,
                "healthzBindAddress": f"127.0.0.1:{free_port()}",
                "metricsBindAddress": f"127.0.0.1:{free_port()}",
                "nodePortAddresses": ["127.0.0.1/32"],
                "conntrack": {"maxPerCore": 0},
            },
        )
        self._start([find_binary("kube-proxy"), f"--config={config}"], "kube-proxy")

    def _coredns(self, kubeconfig: Path) -> None:
        corefile = self.workdir / "Corefile"
        corefile.write_text(
            f""".:53 {{
    bind {BRIDGE_IP}
    errors
    health 127.0.0.1:{free_port()}
    ready 127.0.0.1:{free_port()}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} roomgate-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
    loop
}}
"""
        )
        self._start([find_binary("coredns"), "-conf", str(corefile)], "coredns")

    def _ingress(self, api: KubeAPI, deadline: float) -> None:
        """HAProxy Ingress as a pod (roomgate_tools.cluster_ingress), its image imported first."""
        for archive in export_images([INFRA_REF]).values():
            ctr_import(self.workdir / "containerd" / "containerd.sock", archive)
        self.ingress_url = cluster_ingress.install(api, deadline)

    def _wait_node_ready(self, api: KubeAPI, deadline: float) -> None:
        last: object = ""
        while time.monotonic() < deadline:
            if (gone := self.exited()) is not None:
                raise ProcessError(f"{Path(gone.argv[0]).name} exited:\n" + gone.output()[-4000:])
            status, node = api.request("GET", f"/api/v1/nodes/{NODE_NAME}")
            conditions = (node.get("status", {}).get("conditions") or []) if status == 200 else []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                return
            last = conditions or node.get("message", status)
            time.sleep(1)
        raise ProcessError(f"node {NODE_NAME} not Ready in time ({str(last)[-500:]})")


def import_oci_image(build: Path, files: dict[str, Path], ref: str, entrypoint: list[str]) -> Path:
    """A docker-archive (``docker save`` format) of one layer holding ``files``."""
    import hashlib
    import tarfile

    layer = build / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        for name, src in files.items():
            tar.add(src, arcname=name)
    digest = hashlib.sha256(layer.read_bytes()).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{digest}"]},
    }
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    out = build / "image.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(layer, arcname=f"{digest}/layer.tar")
        (build / config_name).write_bytes(config_bytes)
        tar.add(build / config_name, arcname=config_name)
        manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": [f"{digest}/layer.tar"]}]
        (build / "manifest.json").write_text(json.dumps(manifest))
        tar.add(build / "manifest.json", arcname="manifest.json")
    return out


def ctr_import(sock: Path, archive: Path) -> None:
    """Import a ``docker save`` archive into containerd's ``k8s.io`` namespace."""
    res = _run(
        find_binary("ctr"), f"--address={sock}", "-n", "k8s.io", "images", "import",
        "--no-unpack=false", str(archive), check=False,
    )  # fmt: skip
    if res.returncode:
        raise ProcessError(f"ctr images import {archive} failed: {res.stderr[-2000:]}")


# -- the host outside the state directory ----------------------------------------------


def _bridge_up() -> None:
    if _run("ip", "link", "show", BRIDGE, check=False).returncode:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "replace", f"{BRIDGE_IP}/16", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")
    # Pods reach the host's DNS/API/ingress on the bridge, and each other (br_netfilter).
    _run("sysctl", "-qw", "net.ipv4.ip_forward=1", check=False)


def _kill_leftovers(workdir: Path) -> None:
    """Kill what still runs of this cluster. containerd's shims (and their containers)
    reparent to init, out of PR_SET_PDEATHSIG's reach: found by the socket address under
    ``workdir``, they go with their children. Any other process naming ``workdir`` in its
    arguments (a component whose supervisor died mid-start) goes too; not this process, its
    parent, nor this module's own commands (``down`` waiting for the runner it stopped)."""
    root = str(workdir.resolve())
    address = f"{root}/containerd/containerd.sock".encode()
    spared = {os.getpid(), os.getppid()}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        pid = int(proc.name)
        if pid in spared or b"roomgate_tools.cluster" in argv:
            continue
        if not any(root.encode() in arg for arg in argv):
            continue
        if b"containerd-shim" in argv[0] and address in argv:
            for child in Path("/proc").glob("[0-9]*"):
                try:
                    if (child / "stat").read_text().split(") ")[1].split()[1] == proc.name:
                        os.kill(int(child.name), signal.SIGKILL)
                except (OSError, IndexError, ValueError):
                    continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _cleanup_host(workdir: Path) -> None:
    """Unmount what containerd and kubelet mounted under workdir; drop the bridge and the
    iptables chains kube-proxy and the CNI plugins made."""
    _kill_leftovers(workdir)
    mounts = [
        line.split()[1]
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1].startswith(str(workdir.resolve()))
    ]
    for mount in sorted(mounts, key=len, reverse=True):
        _run("umount", "-l", mount, check=False)
    netns = Path("/run/netns")
    if netns.is_dir():
        for ns in netns.glob("cni-*"):
            _run("ip", "netns", "delete", ns.name, check=False)
    _run("ip", "link", "delete", BRIDGE, check=False)
    proxy = find_binary("kube-proxy")
    _run(proxy, "--cleanup", check=False)
    for table, chains in {"nat": ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SNAT")}.items():
        for chain in chains:
            _run("iptables", "-t", table, "-F", chain, check=False)
    _drop_kubelet_chains()
    _drop_kubepods_cgroups()
    _drop_container_log_links(workdir)


def _drop_container_log_links(workdir: Path) -> None:
    """kubelet links every container's log into /var/log/containers (fixed path)."""
    ours = str(workdir.resolve() / "pod-logs")
    for link in Path("/var/log/containers").glob("*.log"):
        if link.is_symlink() and os.readlink(link).startswith(ours):
            link.unlink()


# Chains kubelet (and kube-proxy's hint) create, which `kube-proxy --cleanup` leaves behind;
# KUBE-FIREWALL drops 127.0.0.0/8 traffic from other sources, so it must not outlive us.
_KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")


def _drop_kubelet_chains() -> None:
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            listing = _run(tool, "-t", table, "-S", check=False).stdout.splitlines()
            for rule in listing:
                words = rule.split()
                if words[:1] == ["-A"] and "-j" in words and words[-1] in _KUBELET_CHAINS:
                    _run(tool, "-t", table, "-D", *words[1:], check=False)
            for chain in _KUBELET_CHAINS:
                if f"-N {chain}" in listing:
                    _run(tool, "-t", table, "-F", chain, check=False)
                    _run(tool, "-t", table, "-X", chain, check=False)


def _drop_kubepods_cgroups() -> None:
    """kubelet's cgroupfs hierarchy (/sys/fs/cgroup/<controller>/kubepods), once empty."""
    for top in Path("/sys/fs/cgroup").glob("*/kubepods"):
        for cgroup in sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
        ):
            try:
                cgroup.rmdir()
            except OSError:
                continue
        try:
            top.rmdir()
        except OSError:
            continue


# -- up / down / run -------------------------------------------------------------------


def _state(workdir: Path) -> dict[str, object] | None:
    path = workdir / "state.json"
    if not path.exists():
        return None
    data: dict[str, object] = json.loads(path.read_text())
    return data


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _run_cluster(workdir: Path, ingress: bool) -> int:
    """The runner: start everything, write state.json, wait for SIGTERM, stop everything."""
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    cluster = Cluster(workdir, ingress=ingress)
    try:
        api = cluster.start()
        _write_json(
            workdir / "state.json",
            {"runner": os.getpid(), "kubeconfig": str(api.kubeconfig),
             "ingress": cluster.ingress_url or None},
        )  # fmt: skip
        while not stop:
            if (gone := cluster.exited()) is not None:
                print(f"{gone.argv[0]} exited: stopping", file=sys.stderr)
                stop = True
            time.sleep(0.5)
    except BaseException as exc:
        (workdir / "failed").write_text(str(exc))
        raise
    finally:
        cluster.stop()
    return 0


def _down(workdir: Path) -> int:
    state = _state(workdir)
    runner_pid_file = workdir / "runner.pid"
    pid = int(runner_pid_file.read_text()) if runner_pid_file.exists() else 0
    if state:
        pid = int(str(state["runner"]))
    if pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        for _ in range(600):
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
    if workdir.exists():
        _cleanup_host(workdir)
        _run("rm", "-rf", "--one-file-system", str(workdir), check=False)
    print("stopped")
    return 0


def _up(workdir: Path, timeout: float, ingress: bool) -> int:
    _down(workdir)  # clears a dead (or live) earlier cluster in the same directory
    workdir.mkdir(parents=True)
    log = (workdir / "runner.log").open("ab")
    runner = subprocess.Popen(
        [sys.executable, "-m", "roomgate_tools.cluster", "run", "--dir", str(workdir),
         *(["--ingress"] if ingress else [])],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO_ROOT,
    )  # fmt: skip
    (workdir / "runner.pid").write_text(str(runner.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _state(workdir)
        if state:
            if state["ingress"]:
                print(f"ingress: {state['ingress']}")
            print(f"export KUBECONFIG={state['kubeconfig']}")
            return 0
        if runner.poll() is not None:
            print((workdir / "runner.log").read_text()[-6000:], file=sys.stderr)
            return 1
        time.sleep(0.5)
    # `down` removes the state directory: keep the component and pod logs for the post-mortem.
    kept = workdir.with_name(workdir.name + ".last-failure")
    shutil.rmtree(kept, ignore_errors=True)
    for logs in ("logs", "pod-logs"):
        if (workdir / logs).is_dir():
            shutil.copytree(workdir / logs, kept / logs, symlinks=True)
    print(f"cluster not up in {timeout}s; logs kept in {kept}", file=sys.stderr)
    _down(workdir)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m roomgate_tools.cluster")
    parser.add_argument("action", choices=["up", "down", "run"])
    parser.add_argument("--dir", type=Path, default=REPO_ROOT / ".cache" / "cluster")
    parser.add_argument(
        "--timeout", type=float, default=None,
        help=f"`up` seconds (default {UP_TIMEOUT:.0f}, +{INGRESS_TIMEOUT:.0f} with --ingress)",
    )  # fmt: skip
    parser.add_argument(
        "--ingress", action="store_true", help="also run HAProxy Ingress (needs `make images`)"
    )
    args = parser.parse_args(argv)
    workdir = args.dir.resolve()
    if args.action == "run":
        return _run_cluster(workdir, args.ingress)
    timeout = args.timeout or UP_TIMEOUT + (INGRESS_TIMEOUT if args.ingress else 0)
    return _up(workdir, timeout, args.ingress) if args.action == "up" else _down(workdir)


if __name__ == "__main__":
    sys.exit(main())
