"""Write the values table of charts/roomgate/README.md from values.yaml: every key, its
type, default and the `# --` comment above it (between the values:start/end markers).

    .venv/bin/python tools/kube/gen_chart_readme.py          # rewrite the table
    .venv/bin/python tools/kube/gen_chart_readme.py --check  # exit 1 when it is stale
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from gen_values_schema import FREE_FORM, lookup

CHART = Path(__file__).resolve().parents[2] / "charts" / "roomgate"
README = CHART / "README.md"
START, END = "<!-- values:start -->", "<!-- values:end -->"
# Descriptions of keys every component repeats, by their last path segments.
GENERIC = {
    "enabled": "Deploy this component / turn this feature on.",
    "image.repository": "Image repository under image.registry.",
    "replicas": "Replicas of the Deployment.",
    "port": "Port the service listens on (ROOMGATE_LISTEN=0.0.0.0:<port>).",
    "shutdownGraceSeconds": "Seconds of in-flight work after SIGTERM (ROOMGATE_SHUTDOWN_GRACE).",
    "terminationGracePeriodSeconds": "Pod grace period; longer than the shutdown grace.",
    "env": "Extra environment variables (name: value).",
    "resources": "Container resource requests and limits.",
    "podAnnotations": "Annotations of the pods.",
    "nodeSelector": "Pod nodeSelector.",
    "tolerations": "Pod tolerations.",
    "affinity": "Pod affinity.",
    "topologySpreadConstraints": "Pod topologySpreadConstraints.",
    "pdb.enabled": "Create a PodDisruptionBudget.",
    "pdb.maxUnavailable": "maxUnavailable of the PodDisruptionBudget.",
    "service.type": "Service type.",
    "service.port": "Service port of the gateway's HTTP/WebSocket endpoint.",
    "service.annotations": "Annotations of the Service.",
    "pullPolicy": "Image pull policy.",
    "tag": "Image tag.",
    "annotations": "Extra annotations.",
    "labels": "Extra labels.",
    "autoscaling.minReplicas": "HPA minimum replicas.",
    "autoscaling.maxReplicas": "HPA maximum replicas.",
    "autoscaling.targetCPUUtilizationPercentage": "HPA target CPU utilisation.",
    "persistence.enabled": "Keep the AOF on a PersistentVolumeClaim (emptyDir otherwise).",
    "persistence.size": "Size of the PVC.",
    "persistence.storageClass": "StorageClass of the PVC (empty: the default class).",
    "persistence.accessModes": "Access modes of the PVC.",
    "className": "IngressClass.",
    "hosts": "Hosts and path prefixes routed to the gateway.",
    "tls": "Ingress TLS entries.",
    "hostnames": "Hostnames of the HTTPRoute.",
    "parentRefs": "Gateways the HTTPRoute attaches to (empty namespace/sectionName: omitted).",
    "interval": "Scrape interval.",
}

KEY = re.compile(r"^(\s*)([A-Za-z_][\w.-]*):")


def comments() -> dict[str, str]:
    """Dotted key path -> text of the `# --` comment block right above it."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if stripped.startswith("#") and pending:
            pending.append(stripped[1:].strip())
            continue
        m = KEY.match(line)
        if not m or stripped.startswith("-"):
            pending = [] if not stripped.startswith("#") else pending
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        if pending:
            found[".".join(k for _, k in stack)] = " ".join(pending)
        pending = []
    return found


def rows(value: Any, path: str, docs: dict[str, str]) -> list[tuple[str, str, str, str]]:
    if isinstance(value, dict) and value and lookup(FREE_FORM, path) is None:
        out = []
        if path in docs:
            out.append((path, "object", "", docs[path]))
        for k, v in value.items():
            out += rows(v, f"{path}.{k}" if path else k, docs)
        return out
    kind = {dict: "object", list: "list", bool: "bool", int: "int", float: "number"}.get(
        type(value), "string"
    )
    default = json.dumps(value)
    text = docs.get(path, "")
    if not text:
        parts = path.split(".")
        text = next(
            (GENERIC[".".join(parts[-n:])] for n in (2, 1) if ".".join(parts[-n:]) in GENERIC),
            "",
        )
    if not text and ".defaultPolicy." in path:
        text = "GatewayPolicy field (see the CRD for its range)."
    return [(path, kind, default, text)]


def table() -> str:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    docs = comments()
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for key, kind, default, text in rows(values, "", docs):
        default, text = default.replace("|", r"\|"), text.replace("|", r"\|")
        lines.append(f"| `{key}` | {kind} | `{default}` | {text} |")
    return "\n".join(lines)


def render(current: str) -> str:
    head, _, rest = current.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    current = README.read_text()
    text = render(current)
    if "--check" in argv:
        if text != current:
            print(f"{README} values table is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    README.write_text(text)
    print(f"wrote {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
