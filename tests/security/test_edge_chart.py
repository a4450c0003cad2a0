"""Issue 11, findings 10 and 13 (chart side): no trusted proxy by default, non-IP values
refused by the schema, and NetworkPolicies on by default so that only who needs a service
reaches it (the publish API opened to backends with networkPolicy.publishFrom)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from roomgate_tools.controlplane import find_binary

from tests.kube.conftest import CHART, by_kind, objects, render, run

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def helm() -> str:
    return find_binary("helm")


def _gateway_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    pod = by_kind(docs, "Deployment")["rg-roomgate-gateway"]["spec"]["template"]["spec"]
    return {e["name"]: e.get("value", "") for e in pod["containers"][0]["env"]}


def _peers(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return rule.get("from", [])


def test_default_trusts_no_proxy(helm: str) -> None:
    """By default the gateway trusts no X-Forwarded-For (empty ROOMGATE_FORWARDED_ALLOW_IPS)."""
    assert _gateway_env(objects(render(helm)))["ROOMGATE_FORWARDED_ALLOW_IPS"] == ""


@pytest.mark.parametrize("value", ["*", "ingress-nginx.svc", "10.0.0.0/8;rm"])
def test_non_ip_forwarded_allow_ips_refused(helm: str, value: str) -> None:
    """values.schema.json refuses anything but comma-separated IPs/CIDRs."""
    out = run(
        [helm, "template", "rg", str(CHART), "--set-string", f"gateway.forwardedAllowIps={value}"],
        check=False,
    )
    assert "Error" in out and "forwardedAllowIps" in out, out


def test_ip_and_cidr_list_accepted(helm: str) -> None:
    """An ingress CIDR list renders as the gateway's trusted proxies."""
    docs = objects(render(helm, (), "gateway.forwardedAllowIps=10.244.0.0/16\\,fd00::/8"))
    assert _gateway_env(docs)["ROOMGATE_FORWARDED_ALLOW_IPS"] == "10.244.0.0/16,fd00::/8"


def test_network_policies_on_by_default(helm: str) -> None:
    """Every component has a NetworkPolicy; no ingress rule is open to everyone."""
    policies = by_kind(objects(render(helm)), "NetworkPolicy")
    for component in ("gateway", "auth", "roomauthz", "escalation", "redis", "operator"):
        policy = policies[f"rg-roomgate-{component}"]
        assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        for rule in policy["spec"].get("ingress", []):
            assert _peers(rule), (component, rule)  # a rule without `from` admits any source
    gateway = policies["rg-roomgate-gateway"]["spec"]["ingress"]
    http_peers = [
        p for r in gateway for p in _peers(r) if {"port": "http", "protocol": "TCP"} in r["ports"]
    ]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
    } in http_peers
    for component in ("auth", "roomauthz", "escalation"):
        grpc_rule = policies[f"rg-roomgate-{component}"]["spec"]["ingress"][0]
        assert grpc_rule["from"] == [
            {"podSelector": {"matchLabels": {
                "app.kubernetes.io/name": "roomgate",
                "app.kubernetes.io/instance": "rg",
                "app.kubernetes.io/component": "gateway",
            }}}
        ]  # fmt: skip


def test_publish_from_opens_the_publish_apis_to_backends(helm: str) -> None:
    """networkPolicy.publishFrom admits backends to the HTTP port and the gRPC PublishService."""
    backend = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "backend"}}}
    docs = objects(
        render(
            helm,
            (),
            "gateway.publish.enabled=true",
            "networkPolicy.publishFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=backend",
            "networkPolicy.grpcFrom.escalation[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=backend",
        )
    )
    policies = by_kind(docs, "NetworkPolicy")
    rules = [r for r in policies["rg-roomgate-gateway"]["spec"]["ingress"] if backend in _peers(r)]
    assert len(rules) == 1
    assert {p["port"] for p in rules[0]["ports"]} == {"http", "grpc-publish"}
    escalation = policies["rg-roomgate-escalation"]["spec"]["ingress"]
    assert any(backend in _peers(r) for r in escalation)
    auth = policies["rg-roomgate-auth"]["spec"]["ingress"]
    assert not any(backend in _peers(r) for r in auth)


def test_gateway_has_an_escalation_credential_auth_knows(helm: str) -> None:
    """The generated secret holds the gateway's escalation API key and, for auth, its digest;
    the gateway, auth and escalation read them (escalation verifies callers with auth)."""
    docs = objects(render(helm))
    data = by_kind(docs, "Secret")["rg-roomgate-credentials"]["data"]
    key = base64.b64decode(data["gateway-escalation-key"]).decode()
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert base64.b64decode(data["service-keys"]).decode() == f"gateway:escalation={digest}"
    deployments = by_kind(docs, "Deployment")

    def env(name: str) -> dict[str, Any]:
        pod = deployments[f"rg-roomgate-{name}"]["spec"]["template"]["spec"]
        return {e["name"]: e for e in pod["containers"][0]["env"]}

    ref = env("gateway")["ROOMGATE_ESCALATION_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref["key"] == "gateway-escalation-key"
    assert (
        env("auth")["ROOMGATE_SERVICE_KEYS"]["valueFrom"]["secretKeyRef"]["key"] == "service-keys"
    )
    assert env("escalation")["ROOMGATE_AUTH_ADDR"]["value"].endswith(":50051")
