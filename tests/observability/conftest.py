"""The operator's fixtures (a namespace on the real API server with the GatewayPolicy CRD):
the live-stack test runs the operator against the stack's gateways."""

from tests.operator.conftest import cluster, kube_with_crd

__all__ = ["cluster", "kube_with_crd"]
