"""Operator settings: one typed object, read once at start from ``ROOMGATE_*`` variables."""

from __future__ import annotations

from pydantic import Field
from roomgate_common.settings import ServiceSettings


class OperatorSettings(ServiceSettings):
    # The namespace whose GatewayPolicies this operator serves (the chart: its own).
    watch_namespace: str = "default"
    # The chart's gateway Deployment (informational: each policy names its target).
    gateway_deployment: str = ""
    # False: apply limits only, never touch replicas (e.g. when an HPA scales the gateway).
    manage_scaling: bool = True
    # host:port of kopf's liveness endpoint (GET /healthz).
    health_listen: str = "127.0.0.1:8081"
    # Seconds between two reconciles of a policy (connections, status, scaling).
    reconcile_interval: float = Field(default=5.0, gt=0, le=300)
    # A kubeconfig file; empty: the in-cluster service account, else $KUBECONFIG.
    kubeconfig: str = ""
