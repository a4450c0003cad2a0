"""OpenTelemetry traces: a tracer provider per process, OTLP export when configured, and the
W3C trace context carried inside the envelope's ``metadata`` (Redis pub/sub carries no
context of its own)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping, Sequence
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


class SingleTracerProvider(trace.TracerProvider):
    """A provider that hands out one tracer. The OpenTelemetry instrumentations take a
    provider; a service that was given a tracer (the gateway, tests) wraps it in this."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def get_tracer(self, *_args: Any, **_kwargs: Any) -> trace.Tracer:
        return self._tracer


def _not_health_check() -> Any:
    from opentelemetry.instrumentation.grpc import filters

    # Readiness probes call Health/Check every second: one trace each would bury the rest.
    return filters.negate(filters.health_check())


def grpc_client_interceptors(tracer: trace.Tracer | None = None) -> Sequence[Any]:
    """Interceptors for a ``grpc.aio`` channel: a CLIENT span per call, child of the current
    span, and the W3C ``traceparent`` in the call's metadata (health checks excluded).
    Without ``tracer`` the global provider's (a no-op until one is set)."""
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    provider = SingleTracerProvider(tracer) if tracer is not None else None
    return list(aio_client_interceptors(tracer_provider=provider, filter_=_not_health_check()))


def grpc_server_interceptor(tracer_provider: trace.TracerProvider) -> Any:
    """The ``grpc.aio`` server interceptor: a SERVER span per call that continues the
    caller's ``traceparent`` from the call metadata (health checks excluded)."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return aio_server_interceptor(tracer_provider=tracer_provider, filter_=_not_health_check())


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span; None outside a recording span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
