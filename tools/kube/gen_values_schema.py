"""Write charts/roomgate/values.schema.json from values.yaml, the GatewayPolicy CRD and the
rules below, so the schema follows the values instead of drifting from them.

    .venv/bin/python tools/kube/gen_values_schema.py          # rewrite the schema
    .venv/bin/python tools/kube/gen_values_schema.py --check  # exit 1 when it is stale

Every object of values.yaml is closed (unknown keys are errors) except the free-form maps in
FREE_FORM; types come from the defaults; RULES adds enums and ranges; the operator's default
GatewayPolicy limits and scaling reuse the CRD's own schema (one source for both).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "roomgate"
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
ENV_MAP = {
    "type": "object",
    "additionalProperties": {"type": ["string", "number", "boolean"]},
    "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
}
ANY_OBJECT = {"type": "object"}
OBJECT_LIST = {"type": "array", "items": {"type": "object"}}

# Paths (dot-joined, '*' for any service) whose content is free-form.
FREE_FORM: dict[str, dict[str, Any]] = {
    "commonLabels": STRING_MAP,
    "podSecurityContext": ANY_OBJECT,
    "securityContext": ANY_OBJECT,
    "imagePullSecrets": OBJECT_LIST,
    "*.env": ENV_MAP,
    "*.resources": ANY_OBJECT,
    "*.podAnnotations": STRING_MAP,
    "*.nodeSelector": STRING_MAP,
    "*.tolerations": OBJECT_LIST,
    "*.affinity": ANY_OBJECT,
    "gateway.topologySpreadConstraints": OBJECT_LIST,
    "gateway.service.annotations": STRING_MAP,
    "roomauthz.policy": ANY_OBJECT,
    "escalation.policy": ANY_OBJECT,
    "networkPolicy.publishFrom": OBJECT_LIST,
    "networkPolicy.grpcFrom.auth": OBJECT_LIST,
    "networkPolicy.grpcFrom.roomauthz": OBJECT_LIST,
    "networkPolicy.grpcFrom.escalation": OBJECT_LIST,
    "escalation.extraEgress": OBJECT_LIST,
    "ingress.annotations": STRING_MAP,
    "ingress.tls": OBJECT_LIST,
    "httpRoute.annotations": STRING_MAP,
    "httpRoute.parentRefs": OBJECT_LIST,
    "networkPolicy.gatewayFrom": OBJECT_LIST,
    "networkPolicy.metricsFrom": OBJECT_LIST,
    "networkPolicy.dnsTo": OBJECT_LIST,
    "networkPolicy.otlp.to": OBJECT_LIST,
    "networkPolicy.externalRedisTo": OBJECT_LIST,
    "serviceMonitor.labels": STRING_MAP,
    "prometheusRule.labels": STRING_MAP,
    "dashboard.labels": STRING_MAP,
    "dashboard.annotations": STRING_MAP,
}

RULES: dict[str, dict[str, Any]] = {
    "logLevel": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]},
    "image.pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    "redis.image.pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    "metricsPort": PORT,
    "*.port": PORT,
    "operator.healthPort": PORT,
    "gateway.publish.port": PORT,
    "gateway.service.port": PORT,
    "redis.port": PORT,
    "networkPolicy.otlp.port": PORT,
    "networkPolicy.externalRedisPort": PORT,
    "*.replicas": {"minimum": 0},
    "gateway.service.type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
    "gateway.drainSeconds": {"minimum": 0},
    "gateway.preStopSleepSeconds": {"minimum": 0},
    "*.terminationGracePeriodSeconds": {"minimum": 1},
    "*.shutdownGraceSeconds": {"minimum": 0},
    "gateway.autoscaling.minReplicas": {"minimum": 1},
    "gateway.autoscaling.maxReplicas": {"minimum": 1},
    "gateway.autoscaling.targetCPUUtilizationPercentage": {"minimum": 1, "maximum": 100},
    "*.pdb.maxUnavailable": {"type": ["integer", "string"]},
    "redis.appendfsync": {"enum": ["always", "everysec", "no"]},
    "redis.persistence.accessModes": {
        "type": "array",
        "items": {"enum": ["ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany"]},
    },
    "externalRedis.mode": {"enum": ["standalone", "sentinel", "cluster"]},
    "externalRedis.database": {"minimum": 0, "maximum": 15},
    "ingress.affinity.mode": {"enum": ["persistent", "balanced"]},
    "ingress.affinity.cookieMaxAgeSeconds": {"minimum": 1},
    "ingress.websocketTimeoutSeconds": {"minimum": 60},
    "httpRoute.sessionPersistence.type": {"enum": ["Cookie", "Header"]},
    "httpRoute.sessionPersistence.absoluteTimeout": {"pattern": "^([0-9]{1,5}(h|m|s|ms)){1,4}$"},
    "httpRoute.requestTimeout": {"pattern": "^([0-9]{1,5}(h|m|s|ms)){1,4}$"},
    "serviceMonitor.interval": {"pattern": "^[0-9]+(ms|s|m|h)$"},
    "auth.jwt.issuer": {"minLength": 1},
    "auth.serviceKeys": {
        "type": "array",
        "items": {"type": "string", "pattern": "^[^,=]+=[0-9a-f]{64}$"},
    },
    # Comma-separated IPv4/IPv6 addresses or CIDRs, or empty (the gateway checks each exactly).
    "gateway.forwardedAllowIps": {
        "pattern": r"^$|^ *[0-9A-Fa-f:.]+(/[0-9]{1,3})? *(, *[0-9A-Fa-f:.]+(/[0-9]{1,3})? *)*$"
    },
    "auth.jwt.audience": {"minLength": 1},
}


def crd_spec() -> dict[str, Any]:
    crd = yaml.safe_load((CHART / "crds" / "gatewaypolicies.roomgate.io.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]["properties"]


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD (OpenAPI) object schema as a closed JSON Schema, CEL rules dropped."""
    out = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if "properties" in out:
        out["properties"] = {k: closed(v) for k, v in out["properties"].items()}
        out["additionalProperties"] = False
    return out


def lookup(table: dict[str, Any], path: str) -> Any:
    if path in table:
        return table[path]
    _, _, rest = path.partition(".")
    return table.get(f"*.{rest}") if rest else None


def infer(value: Any, path: str) -> dict[str, Any]:
    free = lookup(FREE_FORM, path)
    if free is not None:
        schema = dict(free)
    elif isinstance(value, dict):
        schema = {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: infer(v, f"{path}.{k}" if path else k) for k, v in value.items()},
        }
    elif isinstance(value, list):
        items = infer(value[0], f"{path}[]") if value else {}
        schema = {"type": "array", "items": items}
    elif isinstance(value, bool):
        schema = {"type": "boolean"}
    elif isinstance(value, int):
        schema = {"type": "integer"}
    elif isinstance(value, float):
        schema = {"type": "number"}
    else:
        schema = {"type": "string"}
    rule = lookup(RULES, path)
    if rule:
        schema.update(rule)
    return schema


def render() -> str:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = infer(values, "")
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Roomgate chart values",
        **schema,
    }
    schema["properties"]["global"] = {"type": "object"}
    spec = crd_spec()
    policy = schema["properties"]["operator"]["properties"]["defaultPolicy"]["properties"]
    policy["limits"] = closed(spec["limits"])
    policy["scaling"] = closed(spec["scaling"])
    return json.dumps(schema, indent=2) + "\n"


def main(argv: list[str]) -> int:
    target = CHART / "values.schema.json"
    text = render()
    if "--check" in argv:
        if not target.exists() or target.read_text() != text:
            print(f"{target} is stale: run tools/kube/gen_values_schema.py", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
