"""OpenTelemetry traces: a tracer provider per process, OTLP export when configured, and the
W3C trace context carried inside the envelope's ``metadata`` (Redis pub/sub carries no
context of its own)."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter


def make_tracer_provider(
    service: str, otlp_endpoint: str = "", exporter: SpanExporter | None = None
) -> TracerProvider:
    """A provider for one service. ``exporter`` (tests) wins over ``otlp_endpoint``."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"roomgate-{service}"}))
    if exporter is None and otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp_endpoint)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def inject_trace(metadata: MutableMapping[str, Any]) -> None:
    """Write the current span's ``traceparent`` (and ``tracestate``) into ``metadata``."""
    propagate.inject(metadata)


def extract_trace(metadata: Mapping[str, Any] | None) -> otel_context.Context:
    """The context a ``traceparent`` in ``metadata`` names (the empty context without one)."""
    carrier = {k: v for k, v in (metadata or {}).items() if isinstance(v, str)}
    return propagate.extract(carrier)
