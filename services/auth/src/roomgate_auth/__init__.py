"""Roomgate auth service: JWT validation, principals, refresh, revocation (gRPC).

Modules: ``errors`` (exceptions, rejection reasons), ``tokens`` (the pure core: verify and
mint), ``settings`` (environment, key loading), ``store`` (revocation and API keys in
Redis), ``server`` (gRPC servicer and the service object), ``main`` (console script).
"""
