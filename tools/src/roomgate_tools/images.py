"""Build the five service images (``make images``) and the image the container stack runs
Redis and HAProxy from, with a real engine (``roomgate_tools.engine``).

    python -m roomgate_tools.images build      # everything; prints sizes and build times
    python -m roomgate_tools.images base       # prints the Python base image in use
    python -m roomgate_tools.images refs       # prints the references the chart renders
    python -m roomgate_tools.images env        # the build arguments as ROOMGATE_* exports
                                               # (skaffold.yaml reads them: `make -s images-env`)

Tags are what the chart renders by default: ``<image.registry>/<svc.image.repository>:<tag>``
from charts/roomgate/values.yaml, the tag being the chart's appVersion (``image.tag`` empty),
so ``helm install`` on a cluster that has these images loaded needs no ``--set``.

The base image is the Dockerfiles' build argument ``PYTHON_IMAGE`` (default, in the
Dockerfiles: upstream ``python:3.11-slim-bookworm``). When it is neither present nor
pullable, an equivalent is built from Debian packages: ``mmdebstrap --variant=minbase`` of
bookworm with python3 (3.11), python3-venv, ca-certificates and passwd, ``docker import``ed
as ``roomgate-base/python:3.11-bookworm-<hash of the recipe>`` and kept by the engine (the
data root under .cache/images), so it is made once per machine.

Builds use the host's network (no bridge on our own daemon; PyPI for uv) and pass the host's
CA bundle as the BuildKit secret ``ca-certificates`` (a TLS-inspecting proxy), which the
Dockerfiles mount for the one download step: it lands in no layer. uv's download cache is a
BuildKit cache mount: warm builds reuse wheels, the lock still decides every version.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from roomgate_tools.engine import REPO_ROOT, DockerEngine, EngineError, engine

SERVICES = ("gateway", "auth", "roomauthz", "escalation", "operator")
CHART = REPO_ROOT / "charts" / "roomgate"
CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")

# The Debian equivalent of python:3.11-slim-bookworm (bookworm's python3 is 3.11).
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd")
MMDEBSTRAP_OPTIONS = (
    "--variant=minbase",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
)
BASE_REPOSITORY = "roomgate-base/python"

# Redis and HAProxy for the container stack, from Debian packages (tools/images/infra).
INFRA_DOCKERFILE = REPO_ROOT / "tools" / "images" / "infra" / "Dockerfile"
INFRA_UPSTREAM_BASE = "debian:bookworm-slim"
INFRA_REF = "roomgate-dev/infra:bookworm"


Say = Callable[[str], None]


class ImageError(RuntimeError):
    """An image could not be built (the message says which step and why)."""


# --------------------------------------------------------------------------- references
@dataclass(frozen=True)
class ChartImages:
    registry: str
    tag: str
    repositories: dict[str, str]

    def ref(self, svc: str) -> str:
        return f"{self.registry}/{self.repositories[svc]}:{self.tag}"

    @property
    def refs(self) -> dict[str, str]:
        return {svc: self.ref(svc) for svc in SERVICES}


def chart_images(chart: Path = CHART) -> ChartImages:
    """The image references the chart renders with its default values."""
    values = yaml.safe_load((chart / "values.yaml").read_text())
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    tag = values["image"].get("tag") or str(meta["appVersion"])
    return ChartImages(
        registry=values["image"]["registry"],
        tag=tag,
        repositories={svc: values[svc]["image"]["repository"] for svc in SERVICES},
    )


def upstream_base() -> str:
    """The Dockerfiles' default PYTHON_IMAGE (one value in all five, checked)."""
    defaults = set()
    for svc in SERVICES:
        text = (REPO_ROOT / "services" / svc / "Dockerfile").read_text()
        match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
        if not match:
            raise ImageError(f"services/{svc}/Dockerfile has no ARG PYTHON_IMAGE=<default>")
        defaults.add(match.group(1))
    if len(defaults) != 1:
        raise ImageError(f"the Dockerfiles disagree on PYTHON_IMAGE: {sorted(defaults)}")
    return defaults.pop()


def debian_base_ref() -> str:
    recipe = json.dumps([DEBIAN_SUITE, DEBIAN_PACKAGES, MMDEBSTRAP_OPTIONS]).encode()
    return f"{BASE_REPOSITORY}:3.11-{DEBIAN_SUITE}-{hashlib.sha256(recipe).hexdigest()[:12]}"


def ca_bundle() -> str | None:
    for path in (os.environ.get("SSL_CERT_FILE", ""), *CA_BUNDLES):
        if path and Path(path).is_file():
            return path
    return None


def _git(*args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


def oci_args(version: str) -> dict[str, str]:
    """OCI label values: the chart's version, the commit and its time (not the build's:
    the same commit gives the same labels), the source (origin remote, or the chart's home)."""
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return {
        "VERSION": version,
        "REVISION": _git("rev-parse", "HEAD") or "unknown",
        "CREATED": _git("log", "-1", "--format=%cI") or "1970-01-01T00:00:00Z",
        "SOURCE": _git("remote", "get-url", "origin") or str(meta.get("home", "")),
    }


# --------------------------------------------------------------------------------- base
def _pullable(eng: DockerEngine, ref: str) -> bool:
    if eng.has_image(ref):
        return True
    try:
        return eng.docker("pull", "--quiet", ref, check=False, timeout=300).returncode == 0
    except EngineError:
        return False


def build_debian_base(eng: DockerEngine, say: Say = print) -> str:
    """The Debian-built equivalent of python:3.11-slim (made once, then found by tag)."""
    ref = debian_base_ref()
    if eng.has_image(ref):
        return ref
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise ImageError(
            f"{upstream_base()} cannot be pulled and mmdebstrap is missing to build an "
            "equivalent (Debian: apt-get install mmdebstrap; `make images` does)"
        )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="roomgate-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        argv = [
            mmdebstrap,
            *MMDEBSTRAP_OPTIONS,
            f"--include={','.join(DEBIAN_PACKAGES)}",
            DEBIAN_SUITE,
            str(tarball),
        ]
        say(f"building {ref} with mmdebstrap ({', '.join(DEBIAN_PACKAGES)})")
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
        if proc.returncode != 0:
            raise ImageError(f"mmdebstrap failed:\n{(proc.stderr or proc.stdout)[-3000:]}")
        eng.docker(
            "import",
            "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change", "ENV LANG=C.UTF-8",
            "--change", 'CMD ["python3"]',
            "--message", f"mmdebstrap {DEBIAN_SUITE} {' '.join(DEBIAN_PACKAGES)}",
            str(tarball), ref,
            timeout=600,
        )  # fmt: skip
    say(f"{ref}: {time.monotonic() - started:.0f} s (mmdebstrap + docker import)")
    return ref


def resolve_base(eng: DockerEngine, say: Say = print) -> str:
    """``$ROOMGATE_PYTHON_IMAGE``, else the upstream default when present or pullable,
    else the Debian-built equivalent."""
    if wanted := os.environ.get("ROOMGATE_PYTHON_IMAGE"):
        if not _pullable(eng, wanted):
            raise ImageError(f"ROOMGATE_PYTHON_IMAGE={wanted} is neither present nor pullable")
        return wanted
    upstream = upstream_base()
    if _pullable(eng, upstream):
        return upstream
    say(f"{upstream} cannot be pulled: using an equivalent built from Debian packages")
    return build_debian_base(eng, say)


# -------------------------------------------------------------------------------- build
@dataclass(frozen=True)
class Built:
    name: str
    ref: str
    seconds: float
    size: int


def _build(
    eng: DockerEngine,
    dockerfile: Path,
    ref: str,
    build_args: dict[str, str],
    log_dir: Path,
) -> float:
    argv = ["build", "--network", "host", "--progress", "plain", "-f", str(dockerfile), "-t", ref]
    if bundle := ca_bundle():
        argv += ["--secret", f"id=ca-certificates,src={bundle}"]
    for key, value in build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    log = log_dir / f"{ref.rsplit('/', 1)[-1].split(':')[0]}.log"
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(
            [eng.cli, *argv, str(REPO_ROOT)],
            env=eng.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1800,
            check=False,
        )
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise ImageError(f"building {ref} failed ({log}):\n{tail}")
    return time.monotonic() - started


def image_size(eng: DockerEngine, ref: str) -> int:
    return int(eng.docker("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())


def build_all(
    eng: DockerEngine, services: tuple[str, ...] = SERVICES, say: Say = print
) -> list[Built]:
    """Base, the infra image, then every service image (one after another: 2 cores)."""
    log_dir = REPO_ROOT / ".cache" / "images" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    images = chart_images()
    started = time.monotonic()
    base = resolve_base(eng, say)
    built = [Built("base", base, time.monotonic() - started, image_size(eng, base))]
    say(f"base image: {base}")

    infra_base = INFRA_UPSTREAM_BASE if _pullable(eng, INFRA_UPSTREAM_BASE) else base
    seconds = _build(eng, INFRA_DOCKERFILE, INFRA_REF, {"DEBIAN_IMAGE": infra_base}, log_dir)
    built.append(Built("infra (redis, haproxy)", INFRA_REF, seconds, image_size(eng, INFRA_REF)))
    say(f"{INFRA_REF}: {seconds:.1f} s")

    labels = oci_args(images.tag)
    for svc in services:
        ref = images.ref(svc)
        args = {"PYTHON_IMAGE": base, **labels}
        seconds = _build(eng, REPO_ROOT / "services" / svc / "Dockerfile", ref, args, log_dir)
        built.append(Built(svc, ref, seconds, image_size(eng, ref)))
        say(f"{ref}: {seconds:.1f} s")
    return built


def table(built: list[Built], total: float) -> str:
    width = max(len(b.ref) for b in built)
    lines = [f"{'image':<{width}}  {'size':>9}  {'time':>7}"]
    lines += [f"{b.ref:<{width}}  {b.size / 1e6:>6.0f} MB  {b.seconds:>5.1f} s" for b in built]
    lines.append(f"{'total':<{width}}  {'':>9}  {total:>5.1f} s")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m roomgate_tools.images")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the base, the infra image and the service images")
    b.add_argument("services", nargs="*", metavar="SERVICE", help="default: all five")
    sub.add_parser("base", help="print the Python base image (built when needed)")
    sub.add_parser("refs", help="print the image references the chart renders")
    sub.add_parser("env", help="print the build arguments as ROOMGATE_* exports (skaffold)")
    args = parser.parse_args(argv)
    if args.command == "refs":
        print("\n".join(chart_images().refs.values()))
        return 0
    unknown = set(getattr(args, "services", ())) - set(SERVICES)
    if unknown:
        parser.error(f"unknown services {sorted(unknown)}; choose from {', '.join(SERVICES)}")
    started = time.monotonic()
    try:
        with engine() as eng:
            if eng.own:
                print(
                    f"started dockerd ({eng.env['DOCKER_HOST']}) in {eng.started_in:.1f} s",
                    file=sys.stderr if args.command == "env" else sys.stdout,
                )
            if args.command in ("base", "env"):
                base = resolve_base(eng, say=lambda m: print(m, file=sys.stderr))
                if args.command == "base":
                    print(base)
                    return 0
                for key, value in {"PYTHON_IMAGE": base, **oci_args(chart_images().tag)}.items():
                    print(f"export ROOMGATE_{key}={shlex.quote(value)}")
                return 0
            built = build_all(eng, tuple(args.services) or SERVICES)
    except (EngineError, ImageError) as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    print(table(built, time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
