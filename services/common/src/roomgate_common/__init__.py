"""Roomgate shared library.

Modules: ``errors`` (exception hierarchy), ``keys`` (every Redis key and channel name),
``settings`` (typed settings base), ``logs`` (JSON logging), ``telemetry`` (traces),
``metrics`` (Prometheus endpoint), ``redis`` (the Redis seam), ``grpcserver`` (the
gRPC server shell every service uses), ``envelope`` (the protocol envelope).
"""
