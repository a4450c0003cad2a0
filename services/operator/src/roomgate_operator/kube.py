"""The one seam between the operator's own calls and the Kubernetes API (kubernetes_asyncio).

kopf watches and patches GatewayPolicies through its own client; everything else the
operator does (the target Deployment and its scale, its pods' deletion costs, the limits
ConfigMap, the policy's status) goes through ``KubeClient``, which translates the client's
errors: ``KubeUnavailable`` (transient: network, 5xx, 429, a lost optimistic-concurrency
race) and ``NotFound``.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from roomgate_operator.errors import KubeUnavailable, NotFound, OperatorError
from roomgate_operator.policy import PolicyRef

GROUP, VERSION, PLURAL = "roomgate.io", "v1alpha1", "gatewaypolicies"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True, slots=True)
class Target:
    """The gateway Deployment: its pod selector and current ``spec.replicas``."""

    name: str
    selector: str
    replicas: int


@asynccontextmanager
async def _translate(what: str) -> AsyncIterator[None]:
    try:
        yield
    except ApiException as exc:
        if exc.status == 404:
            raise NotFound(f"{what}: not found") from exc
        if exc.status in (409, 429) or exc.status >= 500:
            raise KubeUnavailable(f"{what}: HTTP {exc.status}") from exc
        raise OperatorError(f"{what}: HTTP {exc.status} {exc.reason}") from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise KubeUnavailable(f"{what}: {exc.__class__.__name__}") from exc


def label_selector(selector: client.V1LabelSelector) -> str:
    """A LabelSelector as the ``labelSelector`` query string (matchLabels and
    matchExpressions: In, NotIn, Exists, DoesNotExist)."""
    terms = [f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items())]
    for expr in selector.match_expressions or []:
        values = ",".join(expr.values or [])
        terms.append(
            {
                "In": f"{expr.key} in ({values})",
                "NotIn": f"{expr.key} notin ({values})",
                "Exists": expr.key,
                "DoesNotExist": f"!{expr.key}",
            }[expr.operator]
        )
    return ",".join(terms)


async def load_configuration(kubeconfig: str = "") -> client.Configuration:
    """``kubeconfig`` when given; else the in-cluster service account; else $KUBECONFIG
    (or ~/.kube/config). kopf logs in with the same (handlers.login)."""
    cfg = client.Configuration()
    try:
        if not kubeconfig:
            try:
                config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
                return cfg
            except ConfigException:
                pass
        await config.load_kube_config(config_file=kubeconfig or None, client_configuration=cfg)
    except (ConfigException, OSError) as exc:
        raise OperatorError(f"no Kubernetes credentials: {exc}") from exc
    return cfg


async def bearer_token(cfg: client.Configuration) -> str | None:
    """The token a Configuration sends (service account, kubeconfig token or provider)."""
    maybe: Any = cfg.get_api_key_with_prefix("BearerToken")  # awaitable in recent versions
    header = await maybe if inspect.isawaitable(maybe) else maybe
    if not header:
        return None
    return str(header).split(" ", 1)[-1]


class KubeClient:
    def __init__(self, cfg: client.Configuration) -> None:
        self._api = client.ApiClient(cfg)
        self._apps = client.AppsV1Api(self._api)
        self._core = client.CoreV1Api(self._api)
        self._custom = client.CustomObjectsApi(self._api)

    async def close(self) -> None:
        await self._api.close()

    # -- the target ------------------------------------------------------------------------

    async def target(self, namespace: str, name: str) -> Target:
        async with _translate(f"deployment {namespace}/{name}"):
            dep = await self._apps.read_namespaced_deployment(name, namespace)
        return Target(
            name=name,
            selector=label_selector(dep.spec.selector),
            replicas=int(dep.spec.replicas or 0),
        )

    async def scale(self, namespace: str, name: str, replicas: int) -> int:
        """Set ``spec.replicas`` through the scale subresource (read, then replace with its
        resourceVersion: a concurrent change makes this fail, never silently lose it).
        Returns the previous replicas."""
        async with _translate(f"deployment {namespace}/{name} scale"):
            current = await self._apps.read_namespaced_deployment_scale(name, namespace)
            previous = int(current.spec.replicas or 0)
            if previous != replicas:
                current.spec.replicas = replicas
                await self._apps.replace_namespaced_deployment_scale(name, namespace, current)
        return previous

    async def pods(self, namespace: str, selector: str) -> list[str]:
        """Names of the target's pods that are not being deleted, sorted."""
        async with _translate(f"pods {namespace} {selector}"):
            found = await self._core.list_namespaced_pod(namespace, label_selector=selector)
        return sorted(p.metadata.name for p in found.items if p.metadata.deletion_timestamp is None)

    async def pod_annotations(self, namespace: str, selector: str) -> dict[str, dict[str, str]]:
        async with _translate(f"pods {namespace} {selector}"):
            found = await self._core.list_namespaced_pod(namespace, label_selector=selector)
        return {p.metadata.name: dict(p.metadata.annotations or {}) for p in found.items}

    async def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        async with _translate(f"pod {namespace}/{name}"):
            await self._core.patch_namespaced_pod(
                name, namespace, {"metadata": {"annotations": dict(annotations)}}
            )

    # -- the limits ConfigMap --------------------------------------------------------------

    async def apply_configmap(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        owner: client.V1OwnerReference,
        labels: Mapping[str, str],
    ) -> bool:
        """Create or update the ConfigMap so that its data is ``data``; True when it changed."""
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name=name, namespace=namespace, labels=dict(labels), owner_references=[owner]
            ),
            data=dict(data),
        )
        async with _translate(f"configmap {namespace}/{name}"):
            try:
                current = await self._core.read_namespaced_config_map(name, namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                await self._core.create_namespaced_config_map(namespace, body)
                return True
            if (current.data or {}) == dict(data):
                return False
            body.metadata.resource_version = current.metadata.resource_version
            await self._core.replace_namespaced_config_map(name, namespace, body)
            return True

    # -- GatewayPolicies -------------------------------------------------------------------

    async def _list_policies(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        async with _translate(f"gatewaypolicies {namespace}"):
            found = await self._custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, label_selector=selector
            )
        return list(found.get("items", []))

    async def policies(self, namespace: str) -> list[PolicyRef]:
        return [
            PolicyRef(
                created=str(item["metadata"].get("creationTimestamp", "")),
                name=item["metadata"]["name"],
                target=str(item.get("spec", {}).get("targetRef", {}).get("name", "")),
            )
            for item in await self._list_policies(namespace)
        ]

    async def policy_finalizers(self, namespace: str, selector: str) -> dict[str, list[str]]:
        """The GatewayPolicies matching the label ``selector``: name → finalizers."""
        return {
            item["metadata"]["name"]: list(item["metadata"].get("finalizers") or [])
            for item in await self._list_policies(namespace, selector)
        }

    async def delete_policy(self, namespace: str, name: str) -> None:
        """Ask for the deletion (its finalizers still hold it); gone already is fine."""
        with contextlib.suppress(NotFound):
            async with _translate(f"gatewaypolicy {namespace}/{name}"):
                await self._custom.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name
                )

    async def set_policy_finalizers(self, namespace: str, name: str, keep: list[str]) -> None:
        with contextlib.suppress(NotFound):
            async with _translate(f"gatewaypolicy {namespace}/{name} finalizers"):
                await self._custom.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name,
                    {"metadata": {"finalizers": keep}},
                    _content_type=MERGE_PATCH,  # type: ignore[call-arg]  # missing from the stubs
                )  # fmt: skip

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        async with _translate(f"gatewaypolicy {namespace}/{name} status"):
            await self._custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": dict(status)},
                _content_type=MERGE_PATCH,  # type: ignore[call-arg]  # missing from the stubs
            )
