"""OpenTelemetry traces: a tracer provider per process, OTLP export when configured, and the
W3C trace context carried inside the envelope's ``metadata`` (Redis pub/sub carries no
context of its own)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
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


def inject_trace(
    metadata: MutableMapping[str, Any], context: otel_context.Context | None = None
) -> None:
    """Write the ``traceparent`` (and ``tracestate``) of ``context``'s span, by default the
    current span's, into ``metadata``."""
    propagate.inject(metadata, context=context)


@contextmanager
def detached_span(
    tracer: trace.Tracer,
    name: str,
    *,
    context: otel_context.Context | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[trace.Span]:
    """A span that is not made the current one. For work inside a task that lives as long
    as a connection: setting and resetting a context variable there leaves a private copy
    of the task's context behind (hundreds of bytes per connection, for its whole life).
    Children get the span's context explicitly: ``trace.set_span_in_context(span)``."""
    span = tracer.start_span(name, context=context, attributes=attributes)
    try:
        yield span
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        span.end()


def extract_trace(metadata: Mapping[str, Any] | None) -> otel_context.Context:
    """The context a ``traceparent`` in ``metadata`` names (the empty context without one)."""
    carrier = {k: v for k, v in (metadata or {}).items() if isinstance(v, str)}
    return propagate.extract(carrier)
