"""Generate kubeconform's JSON schemas offline, from the real API server's OpenAPI v3.

kubeconform downloads its schemas from GitHub by default, which CI cannot reach. The API
server we build already knows every built-in kind's schema, and serves the schema of every
CRD installed into it: start it (etcd + kube-apiserver, roomgate_tools.controlplane), install
the chart's GatewayPolicy CRD and the HTTPRoute and ServiceMonitor CRDs (tools/kube/fetch_crds.sh),
read /openapi/v3, and write one standalone schema per kind:

    OUT/<group>/<kind>_<version>.json   (core kinds: OUT/v1/<kind>_v1.json)

which `kubeconform -schema-location 'OUT/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json'`
reads. For -strict (no unknown fields) every object schema with `properties` gets
`additionalProperties: false` unless it preserves unknown fields; OpenAPI's `nullable` becomes a
"null" type; int-or-string and Quantity accept both their forms.

    .venv/bin/python tools/kube/openapi2schemas.py --out DIR --crds DIR
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from roomgate_tools.controlplane import ControlPlane, KubeAPI, install_crds

REPO = Path(__file__).resolve().parents[2]
CHART_CRDS = REPO / "charts" / "roomgate" / "crds"

Schema = dict[str, Any]


def refs_of(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            refs_of(value, found)
    elif isinstance(node, list):
        for value in node:
            refs_of(value, found)


def closure(name: str, components: dict[str, Schema]) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current in seen or current not in components:
            continue
        seen.add(current)
        found: set[str] = set()
        refs_of(components[current], found)
        todo.extend(found - seen)
    return seen


def to_json_schema(node: Any, name: str = "") -> Any:
    """OpenAPI v3 schema → JSON Schema (draft 7) in kubeconform's strict flavour."""
    if isinstance(node, list):
        return [to_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: Schema = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            out[key] = value.replace("#/components/schemas/", "#/definitions/")
        elif key in ("properties", "patternProperties") and isinstance(value, dict):
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        elif key == "nullable" or (
            key.startswith("x-kubernetes-")
            and key
            not in (
                "x-kubernetes-preserve-unknown-fields",
                "x-kubernetes-int-or-string",
                "x-kubernetes-group-version-kind",
            )
        ):
            continue
        else:
            out[key] = to_json_schema(value)
    if (
        node.get("format") == "int-or-string"
        or node.get("x-kubernetes-int-or-string")
        or name.endswith("util.intstr.IntOrString")
    ):
        out.pop("type", None)
        out.pop("format", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if name.endswith("api.resource.Quantity"):
        out.pop("type", None)
        out.pop("format", None)
        out["anyOf"] = [{"type": "number"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else out["type"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    # A `$ref` next to other keywords is ignored by draft 7: wrap it.
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}], **out}
    return out


def kind_schemas(doc: Schema) -> dict[tuple[str, str, str], Schema]:
    components: dict[str, Schema] = doc.get("components", {}).get("schemas", {})
    result = {}
    for name, schema in components.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            if gvk["kind"].endswith("List") or gvk["kind"] in ("WatchEvent", "DeleteOptions"):
                continue
            needed = closure(name, components)
            standalone = to_json_schema(copy.deepcopy(schema), name)
            standalone.pop("x-kubernetes-group-version-kind", None)
            standalone["$schema"] = "http://json-schema.org/draft-07/schema#"
            standalone["definitions"] = {
                n: to_json_schema(copy.deepcopy(components[n]), n) for n in needed if n != name
            }
            result[(gvk["group"], gvk["version"], gvk["kind"])] = standalone
    return result


def generate(api: KubeAPI, out: Path) -> int:
    _, index = api.request("GET", "/openapi/v3")
    written = 0
    for path in sorted(index["paths"]):  # type: ignore[arg-type]
        if not (path.startswith("api/") or path.startswith("apis/")) or path.count("/") < 1:
            continue
        url = index["paths"][path]["serverRelativeURL"]  # type: ignore[index]
        status, doc = api.request("GET", url)
        if status != 200:
            raise RuntimeError(f"GET {url}: {status}")
        for (group, version, kind), schema in kind_schemas(doc).items():
            # kubeconform's {{.Group}} of a core kind ("v1") is the version itself.
            folder = out / (group or version)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{kind.lower()}_{version}.json").write_text(json.dumps(schema))
            written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--crds", type=Path, required=True, help="folder of extra CRD YAMLs")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="openapi2schemas-") as tmp:
        plane = ControlPlane(Path(tmp))
        api = plane.start()
        try:
            crds = sorted(CHART_CRDS.glob("*.yaml")) + sorted(args.crds.glob("*.yaml"))
            names = install_crds(api, crds)
            groups = {n.split(".", 1)[1] for n in names}
            deadline = time.monotonic() + 30
            while True:  # CRD groups appear in /openapi/v3 a moment after Established
                _, index = api.request("GET", "/openapi/v3")
                served = {p.split("/")[1] for p in index["paths"] if p.startswith("apis/")}  # type: ignore[union-attr]
                if groups <= served or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            count = generate(api, args.out)
        finally:
            plane.stop()
    print(f"{count} schemas in {args.out} ({time.monotonic() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
