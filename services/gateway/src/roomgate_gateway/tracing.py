"""Traces of the gateway's HTTP API: the backend's W3C trace context (``traceparent`` /
``tracestate`` headers) is continued by a SERVER span around the handler, so a publish is one
trace from the caller through auth and roomauthz (gRPC client spans, children of it) into the
envelope's metadata and every gateway's ``deliver`` span. The gRPC ``PublishService`` gets the
same from the OpenTelemetry server interceptor (trace context in the call metadata)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Tracer
from starlette.requests import Request
from starlette.responses import Response

Endpoint = Callable[[Request], Awaitable[Response]]


def traced_endpoint(tracer: Tracer, endpoint: Endpoint) -> Endpoint:
    """``endpoint`` inside a SERVER span named ``<METHOD> <path>`` that continues the trace
    of the request's ``traceparent`` (a new trace without one)."""

    async def handler(request: Request) -> Response:
        parent = propagate.extract(request.headers)
        path = request.url.path
        with tracer.start_as_current_span(
            f"{request.method} {path}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": request.method, "url.path": path},
        ) as span:
            response = await endpoint(request)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(trace.Status(trace.StatusCode.ERROR))
            return response

    return handler
