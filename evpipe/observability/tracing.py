"""Optional OpenTelemetry tracing of HTTP requests (off by default).

:func:`instrument` returns the app unchanged unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; then
every request becomes a server span (continuing the caller's W3C ``traceparent``) exported over
OTLP/HTTP. Needs the ``tracing`` extra: ``pip install 'evpipe[tracing]'``.
"""

from __future__ import annotations

import os
from typing import Any

from evpipe.observability.logs import REQUEST_ID, ASGIApp, Message, Receive, Scope, Send


class TracingMiddleware:
    """One server span per HTTP request, named ``METHOD /path``, with status and request id."""

    def __init__(self, app: ASGIApp, tracer: Any) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry import propagate, trace

        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or []}
        parent = propagate.extract(carrier)
        name = f"{scope['method']} {scope['path']}"
        with self.tracer.start_as_current_span(name, context=parent, kind=trace.SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", scope["method"])
            span.set_attribute("url.path", scope["path"])
            request_id = REQUEST_ID.get()
            if request_id:
                span.set_attribute("evpipe.request_id", request_id)

            async def send_traced(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(trace.Status(trace.StatusCode.ERROR))
                await send(message)

            await self.app(scope, receive, send_traced)


def instrument(app: ASGIApp, service_name: str = "evpipe-gateway") -> ASGIApp:
    """Wrap ``app`` in tracing when OTEL_EXPORTER_OTLP_ENDPOINT is set; otherwise return it as is."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return app
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise SystemExit(
            "configuration error: OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed; "
            "install the tracing extra (pip install 'evpipe[tracing]') or unset the variable"
        ) from None
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return TracingMiddleware(app, provider.get_tracer("evpipe.gateway"))
