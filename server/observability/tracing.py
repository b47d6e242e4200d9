"""OpenTelemetry traces: on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, otherwise nothing runs.

Off (the default), `span()` hands back one shared no-op context manager and `extract()`/
`inject()` return at once: no tracer, no propagator, no allocation per call. On, spans go to
the OTLP/HTTP exporter in batches (the SDK reads the standard `OTEL_*` variables itself).

Spans: the sidecar's request (webhooks_http), the gRPC call (interceptor.py), each SQL
statement (`instrument_engine`), each provider HTTP call (`TracingTransport`) and each job
attempt, whose parent is the trace that enqueued it (`eventos_pendentes.traceparent`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

_NULL = contextlib.nullcontext()
_state: dict[str, Any] = {}  # "tracer", "propagator" once configured


def enabled() -> bool:
    return "tracer" in _state


def configure(service_name: str, endpoint: str | None) -> bool:
    """Installs the OTLP exporter when `endpoint` is set. Returns whether tracing is on."""
    if not endpoint or enabled():
        return enabled()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    # The provider stays ours (not the global one): a process hosting both the sidecar and the
    # server (tests, benches) keeps two service names.
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _state["provider"] = provider
    _state["tracer"] = provider.get_tracer("renove.conexoes")
    _state["propagator"] = TraceContextTextMapPropagator()
    return True


def shutdown() -> None:
    """Flushes what is buffered and turns tracing off."""
    provider = _state.pop("provider", None)
    _state.clear()
    if provider is not None:
        provider.shutdown()


def flush() -> None:
    """Exports what is buffered now (tests, shutdown)."""
    provider = _state.get("provider")
    if provider is not None:
        provider.force_flush()


def extract(metadata: Any) -> Any:
    """The remote parent carried in gRPC metadata or headers (`traceparent`), or None."""
    if not enabled():
        return None
    carrier = {k: v for k, v in (metadata or ()) if isinstance(v, str)}
    return _state["propagator"].extract(carrier)


def extract_header(traceparent: str | None) -> Any:
    if not enabled() or not traceparent:
        return None
    return _state["propagator"].extract({"traceparent": traceparent})


def inject() -> dict[str, str]:
    """The current span as `traceparent` (empty when off or outside a span)."""
    if not enabled():
        return {}
    carrier: dict[str, str] = {}
    _state["propagator"].inject(carrier)
    return carrier


def span(
    name: str, parent: Any = None, *, kind: str = "internal", attributes: Mapping[str, Any] = {}
) -> contextlib.AbstractContextManager[Any]:
    if not enabled():
        return _NULL
    from opentelemetry.trace import SpanKind

    return _state["tracer"].start_as_current_span(
        name, context=parent, kind=SpanKind[kind.upper()], attributes=dict(attributes)
    )


def set_outcome(span: Any, code: str) -> None:
    """Records a call's status code on its span (an error status when not OK); no-op off."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("rpc.grpc.status_code", code)
    if code != "OK":
        span.set_status(Status(StatusCode.ERROR, code))


def instrument_engine(sync_engine: Any) -> None:
    """A span per SQL statement (its verb only: statements carry no values, but keep it short)."""
    if not enabled():
        return
    from sqlalchemy import event

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _start(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        cm = span("db " + statement.lstrip().split(" ", 1)[0].upper(), kind="client",
                  attributes={"db.system": "postgresql"})  # fmt: skip
        cm.__enter__()
        conn.info.setdefault("_otel_spans", []).append(cm)

    @event.listens_for(sync_engine, "after_cursor_execute")
    def _end(conn: Any, *_: Any) -> None:
        spans = conn.info.get("_otel_spans")
        if spans:
            spans.pop().__exit__(None, None, None)

    @event.listens_for(sync_engine, "handle_error")
    def _error(context: Any) -> None:
        spans = context.connection.info.get("_otel_spans") if context.connection else None
        if spans:
            spans.pop().__exit__(None, None, None)


class TracingTransport(httpx.AsyncBaseTransport):
    """Wraps a transport: one client span per provider call, `traceparent` sent along."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        attributes = {"http.request.method": request.method, "server.address": request.url.host}
        with span(f"HTTP {request.method} {request.url.host}", kind="client",
                  attributes=attributes) as current:  # fmt: skip
            request.headers.update(inject())
            response = await self._inner.handle_async_request(request)
            if current is not None:
                current.set_attribute("http.response.status_code", response.status_code)
            return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@contextlib.contextmanager
def job_span(operation: str, traceparent: str | None) -> Iterator[None]:
    if not enabled():
        yield
        return
    with span(f"job {operation}", extract_header(traceparent), kind="consumer",
              attributes={"conexoes.operation": operation}):  # fmt: skip
        yield


def traced_transport(limits: httpx.Limits) -> httpx.AsyncBaseTransport | None:
    """The provider clients' transport: traced when tracing is on, httpx's default otherwise."""
    if not enabled():
        return None
    return TracingTransport(httpx.AsyncHTTPTransport(limits=limits))
