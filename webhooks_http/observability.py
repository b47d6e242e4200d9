"""The sidecar's metrics, request ids, log lines and traces.

- `ObservedEdge` (ASGI middleware): a request id per request (the caller's `X-Request-Id` when
  plain and short, else a fresh one, echoed in the response), HTTP metrics by route and status
  (labels are route templates, never raw paths), body sizes, one log line per request.
- `request_metadata()`: the request id (and `traceparent`) as gRPC metadata for every call
  to the server (the service identity's and the gateway's), so the server's log lines and the
  jobs it enqueues carry the same id.
- `GET /metrics`: Prometheus text of this process.
- Traces: a span per request when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; nothing otherwise.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import json
import logging
import re
import time
import uuid
from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webhooks_http import edge_metrics

_access = logging.getLogger("webhooks_http.access")
REQUEST_ID_HEADER = "x-request-id"
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "sidecar_request_id", default=None
)
_tracing: dict[str, Any] = {}

EDGE = edge_metrics.register()


def current_request_id() -> str | None:
    return _request_id.get()


# A fresh id is this process's random prefix and a counter: unique without a random draw per
# request (uuid4 reads the OS's random source each time).
_PREFIX = uuid.uuid4().hex[:16]
_counter = itertools.count(1)


def _accept(value: str | None) -> str:
    if value and _ACCEPTABLE.fullmatch(value):
        return value
    return f"{_PREFIX}{next(_counter):016x}"


async def metrics_endpoint(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def metrics_route() -> Route:
    return Route("/metrics", metrics_endpoint, methods=["GET"])


class ObservedEdge:
    """ASGI middleware around the whole sidecar."""

    def __init__(self, app: ASGIApp, routes: Iterable[BaseRoute]) -> None:
        self.app = app
        # endpoint -> route template, read after routing (Starlette puts the endpoint in scope)
        self._templates: dict[Any, str] = {
            r.endpoint: r.path for r in routes if isinstance(r, Route)
        }

    def _route(self, scope: Scope) -> str:
        template = self._templates.get(scope.get("endpoint"))
        if template is not None:
            return template
        return "gateway" if scope.get("path", "").startswith("/api/") else "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(_accept(_header(scope, b"x-request-id")), receive, send)
        token = _request_id.set(exchange.request_id)
        start = time.perf_counter()
        try:
            if _tracing:
                with _span(scope):
                    await self.app(scope, exchange.receive, exchange.send)
            else:
                await self.app(scope, exchange.receive, exchange.send)
        finally:
            elapsed = time.perf_counter() - start
            _request_id.reset(token)
            self._record(scope, exchange, elapsed)

    def _record(self, scope: Scope, exchange: _Exchange, elapsed: float) -> None:
        route, method, status = self._route(scope), scope["method"], exchange.status
        EDGE.route(route, method).record(status, elapsed, exchange.received, exchange.sent)
        # OK answers are DEBUG (CONEXOES_ACCESS_LOG=all shows them): a line per request
        # would cost more than the rest of this middleware.
        level = logging.DEBUG if status < 500 and elapsed < 1.0 else logging.INFO
        if _access.isEnabledFor(level) and route != "/metrics":
            _access.log(
                level,
                "%s %s %d",
                method,
                route,
                status,
                extra={
                    "request_id": exchange.request_id,
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )


class _Exchange:
    """One request's facts as its messages pass: body sizes and status; the response gets
    the request id header."""

    __slots__ = ("_receive", "_send", "received", "request_id", "sent", "status")

    def __init__(self, request_id: str, receive: Receive, send: Send) -> None:
        self.request_id = request_id
        self._receive = receive
        self._send = send
        self.received = 0
        self.sent = 0
        self.status = 500  # what the client gets when the app raises before answering

    async def receive(self) -> Message:
        message = await self._receive()
        body = message.get("body")
        if body:
            self.received += len(body)
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            body = message.get("body")
            if body:
                self.sent += len(body)
        elif kind == "http.response.start":
            self.status = message["status"]
            header = (b"x-request-id", self.request_id.encode())
            message = {**message, "headers": [*message.get("headers", ()), header]}
        await self._send(message)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


# -- to the server -----------------------------------------------------------------------------


def request_metadata() -> tuple[tuple[str, str], ...]:
    """The current request's id (and `traceparent` when tracing) as gRPC metadata, so the
    server's log lines and the jobs it enqueues carry the same id. Empty outside a request."""
    request_id = _request_id.get()
    if request_id is None:
        return ()
    if not _tracing:
        return ((REQUEST_ID_HEADER, request_id),)
    return ((REQUEST_ID_HEADER, request_id), *_inject().items())


# -- logs and traces ---------------------------------------------------------------------------


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = record.__dict__.get("request_id") or _request_id.get()
        if request_id:
            line["request_id"] = request_id
        for key in ("route", "status", "duration_ms"):
            if key in record.__dict__:
                line[key] = record.__dict__[key]
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def install_logging(level: str, fmt: str, access_log: str = "errors") -> None:
    """JSON lines (`fmt` "json") or text. The sidecar never logs tokens, codes or query
    strings (its access line names the route template, not the path). `access_log` `all`
    logs every request, `errors` only 5xx and slow ones."""
    if access_log == "all":
        _access.setLevel(logging.DEBUG)
    if fmt == "json":
        logging.basicConfig(level=level)
        for handler in logging.getLogger().handlers:
            handler.setFormatter(_JsonFormatter())
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s")


def configure_tracing(endpoint: str | None) -> None:
    if not endpoint or _tracing:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    provider = TracerProvider(resource=Resource.create({"service.name": "conexoes-sidecar"}))
    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _tracing["provider"] = provider
    _tracing["tracer"] = provider.get_tracer("renove.conexoes.sidecar")
    _tracing["propagator"] = TraceContextTextMapPropagator()


def flush_tracing() -> None:
    provider = _tracing.get("provider")
    if provider is not None:
        provider.force_flush()


def shutdown_tracing() -> None:
    """Flushes buffered spans and turns tracing off."""
    provider = _tracing.pop("provider", None)
    _tracing.clear()
    if provider is not None:
        provider.shutdown()


def _inject() -> dict[str, str]:
    if not _tracing:
        return {}
    carrier: dict[str, str] = {}
    _tracing["propagator"].inject(carrier)
    return carrier


def _span(scope: Scope) -> contextlib.AbstractContextManager[Any]:
    if not _tracing:
        return contextlib.nullcontext()
    from opentelemetry.trace import SpanKind

    return _tracing["tracer"].start_as_current_span(
        f"HTTP {scope['method']}", kind=SpanKind.SERVER,
        attributes={"http.request.method": scope["method"]},
    )  # fmt: skip
