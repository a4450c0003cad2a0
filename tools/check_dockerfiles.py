"""Check every service's Dockerfile against the image rules, as text (`make images` builds
them and tests/images runs them).

    python tools/check_dockerfiles.py            # exit 1 and one line per problem

Rules, for services/<svc>/Dockerfile of each service in SERVICES:

* multi-stage: a builder stage and a final stage, both FROM a slim Python 3.11 image;
* the builder installs exactly the service's own distribution from the lock the tests use:
  ``uv sync --frozen --no-dev --no-editable --package roomgate-<svc>``; the final stage
  copies the virtualenv from the builder (``COPY --from=<builder>``) and installs nothing;
* no compiler or build toolchain is installed in the final stage;
* the final stage runs as a non-root user (numeric ``USER uid:gid``, uid ≠ 0);
* read-only-root-filesystem friendly: ``PYTHONDONTWRITEBYTECODE=1`` and no ``VOLUME``;
* a ``Dockerfile.dockerignore`` beside it keeps the build context to the workspace and lock;
* ``STOPSIGNAL SIGTERM`` and an exec-form (JSON) ``ENTRYPOINT`` that runs the service's console
  script ``roomgate-<svc>``;
* where services/<svc>/pyproject.toml exists (some services are still being written), its
  distribution is ``roomgate-<svc>`` and declares that console script, and uv.lock has it.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("gateway", "auth", "roomauthz", "escalation", "operator")
BASE_IMAGE = re.compile(
    r"^(docker\.io/(library/)?)?python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?$"
)
COMPILERS = re.compile(
    r"\b(gcc|g\+\+|cc|clang|build-essential|make|cmake|python3?-dev|libc6-dev|rustc|cargo)\b"
)
INSTALLERS = re.compile(r"\b(pip|uv|apt-get|apt|apk)\b\s+(install|sync|add)\b")


@dataclass
class Instruction:
    keyword: str
    value: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of a Dockerfile (continuations joined)."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    logical: list[tuple[int, str]] = []
    buf, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if not buf:
            start = number
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        logical.append((start, buf + stripped))
        buf = ""
    if buf:
        logical.append((start, buf))
    for number, line in logical:
        keyword, _, value = line.partition(" ")
        keyword, value = keyword.upper(), value.strip()
        if keyword == "FROM":
            parts = value.split()

            rest = [p for p in parts if not p.startswith("--")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), rest[0])
            name = rest[2] if len(rest) >= 3 and rest[1].upper() == "AS" else None
            stages.append(Stage(base, name, number))
        elif not stages and keyword == "ARG":
            key, _, default = value.partition("=")
            args[key] = default.strip("\"'")
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, value, number))
    return args, stages


def env_pairs(value: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for token in shlex.split(value):
        key, sep, val = token.partition("=")
        if sep:
            pairs[key] = val
    return pairs


def check_service(svc: str) -> list[str]:
    path = ROOT / "services" / svc / "Dockerfile"
    rel = path.relative_to(ROOT)
    dist = f"roomgate-{svc}"
    if not path.exists():
        if not (path.parent / "pyproject.toml").exists():
            return []  # the service is not written yet (see pending())
        return [f"{rel}: missing"]
    problems: list[str] = []

    def problem(line: int, text: str) -> None:
        problems.append(f"{rel}:{line}: {text}")

    _, stages = parse(path.read_text())
    if len(stages) < 2:
        problem(1, "not multi-stage (a builder stage and a final stage are required)")
        return problems
    for stage in stages:
        if not BASE_IMAGE.match(stage.base):
            problem(stage.line, f"base image {stage.base!r} is not a slim Python 3.11 image")
    final, builders = stages[-1], stages[:-1]

    # The builder installs exactly this service from the lock.
    syncs = [
        (stage, run)
        for stage in builders
        for run in stage.all("RUN")
        if re.search(r"\buv\s+sync\b", run.value)
    ]
    if not syncs:
        problem(stages[0].line, f"no `uv sync` of {dist} in a builder stage")
    for _stage, run in syncs:
        words = run.value.split()
        for flag in ("--frozen", "--no-dev", "--no-editable"):
            if flag not in words:
                problem(run.line, f"`uv sync` without {flag}")
        packages = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--package"]
        packages += [w.split("=", 1)[1] for w in words if w.startswith("--package=")]
        if packages != [dist]:
            problem(run.line, f"`uv sync` must install exactly --package {dist}, got {packages}")
        if "--all-packages" in words:
            problem(run.line, "`uv sync --all-packages` installs every service")

    # The final stage copies the venv and installs nothing.
    builder_names = {s.name for s in builders if s.name} | {str(i) for i in range(len(builders))}
    copies = [
        c
        for c in final.all("COPY")
        if (m := re.search(r"--from=(\S+)", c.value)) and m.group(1) in builder_names
    ]
    if not copies:
        problem(final.line, "final stage does not COPY --from the builder stage")
    for run in final.all("RUN"):
        if INSTALLERS.search(run.value):
            problem(run.line, "final stage installs packages (do it in the builder)")
        if COMPILERS.search(run.value):
            problem(run.line, "final stage mentions a compiler or build toolchain")
    if COMPILERS.search(final.base):
        problem(final.line, "final stage base image carries a toolchain")

    # Non-root.
    users = final.all("USER")
    if not users:
        problem(final.line, "final stage has no USER (runs as root)")
    else:
        user = users[-1].value.split(":")[0]
        if not user.isdigit():
            problem(users[-1].line, f"USER {user!r}: use a numeric uid (runAsNonRoot checks it)")
        elif int(user) == 0:
            problem(users[-1].line, "USER 0 is root")

    # Read-only root filesystem.
    env: dict[str, str] = {}
    for item in final.all("ENV"):
        env.update(env_pairs(item.value))
    if env.get("PYTHONDONTWRITEBYTECODE") != "1":
        problem(final.line, "final stage lacks ENV PYTHONDONTWRITEBYTECODE=1")
    for volume in final.all("VOLUME"):
        problem(volume.line, "VOLUME in the final stage (the chart mounts what is writable)")

    # Signals and entrypoint.
    stops = final.all("STOPSIGNAL")
    if not stops or stops[-1].value != "SIGTERM":
        problem(final.line, "final stage lacks STOPSIGNAL SIGTERM")
    entrypoints = final.all("ENTRYPOINT")
    if not entrypoints:
        problem(final.line, "final stage has no ENTRYPOINT")
    else:
        entry = entrypoints[-1]
        try:
            argv = json.loads(entry.value)
        except json.JSONDecodeError:
            argv = None
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            problem(entry.line, 'ENTRYPOINT is not in exec form (["..."])')
        elif Path(argv[0]).name != dist:
            problem(entry.line, f"ENTRYPOINT runs {argv[0]!r}, not the {dist} console script")
    if final.all("CMD") and not entrypoints:
        problem(final.line, "CMD without ENTRYPOINT")

    # A small build context: the repository root minus .venv, .cache, .git...
    ignore = path.with_name("Dockerfile.dockerignore")
    if not ignore.exists():
        problem(0, f"{ignore.name} missing (the context would carry .venv and .cache)")
    else:
        lines = [ln.strip() for ln in ignore.read_text().splitlines()]
        if "**" not in lines or "!uv.lock" not in lines:
            problem(0, f"{ignore.name} must exclude everything (**) but the workspace and uv.lock")

    # The distribution and its console script, where the service's code exists already.
    pyproject = path.parent / "pyproject.toml"
    if pyproject.exists():
        meta = tomllib.loads(pyproject.read_text())
        project = meta.get("project", {})
        if project.get("name") != dist:
            problem(0, f"{pyproject.name}: distribution is {project.get('name')!r}, not {dist}")
        if dist not in project.get("scripts", {}):
            problem(0, f"{pyproject.name}: no console script {dist}")
        lock = (ROOT / "uv.lock").read_text()
        if f'name = "{dist}"' not in lock:
            problem(0, f"uv.lock has no {dist}: run `make lock`")
    return problems


def pending() -> list[str]:
    """Services with neither code nor Dockerfile yet (a folder under services/ without a
    pyproject.toml breaks the uv workspace, so their Dockerfile waits for their code)."""
    return [
        svc
        for svc in SERVICES
        if not (ROOT / "services" / svc / "Dockerfile").exists()
        and not (ROOT / "services" / svc / "pyproject.toml").exists()
    ]


def main() -> int:
    problems = [p for svc in SERVICES for p in check_service(svc)]
    for p in problems:
        print(p)
    if problems:
        return 1
    waiting = pending()
    checked = len(SERVICES) - len(waiting)
    print(
        f"{checked} Dockerfiles: every rule holds"
        + (f"; pending: {', '.join(waiting)}" if waiting else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
