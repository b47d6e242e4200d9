"""The outermost interceptor: request id, the standard gRPC server metrics, one log line per
call, webhook outcomes and open streams.

It runs before the error interceptor maps exceptions, so a call's code is read from the
context after the inner interceptors aborted it (a raw exception left is INTERNAL/CANCELLED).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from prometheus_client import Counter, Histogram

from server.interceptors._wrap import OPEN_SERVICES, Continuation, Streaming, Unary, wrap_handler
from server.observability import metrics, tracing
from server.observability.context import REQUEST_ID_HEADER, CallInfo, accept_request_id, bound

_access = logging.getLogger("conexoes.access")
_INGRESS = "renove.conexoes.v1.WebhookIngressService"
_OUTCOME_PREFIX = "DELIVERY_OUTCOME_"
SLOW_CALL_S = 1.0


def _metadata_value(metadata: Any, key: str) -> str | bytes | None:
    for k, v in metadata or ():
        if k == key:
            return v
    return None


def _code_name(context: grpc.aio.ServicerContext, exc: BaseException | None) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "CANCELLED"
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        for status in grpc.StatusCode:
            if status.value[0] == code:
                return status.name
    return "OK" if exc is None else "UNKNOWN"


def webhook_provider(method_name: str) -> str:
    """DeliverMetaLeadsWebhook -> meta_leads."""
    core = re.sub(r"^(Deliver|Verify)|Webhook$", "", method_name)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", core).lower()


class _MethodMetrics:
    """Labelled children bound once per method (no per-call label lookups)."""

    def __init__(self, service: str, method: str, kind: str) -> None:
        self.labels = (service, method, kind)
        self.started = metrics.GRPC_STARTED.labels(*self.labels)
        self.latency: Histogram = metrics.GRPC_LATENCY.labels(*self.labels)
        self._handled: dict[str, Counter] = {}

    def handled(self, code: str) -> Counter:
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = metrics.GRPC_HANDLED.labels(*self.labels, code)
        return child


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self._methods: dict[str, _MethodMetrics] = {}

    def _metrics(self, method: str, kind: str) -> _MethodMetrics:
        found = self._methods.get(method)
        if found is None:
            service, _, name = method.lstrip("/").rpartition("/")
            found = self._methods[method] = _MethodMetrics(service, name, kind)
        return found

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        metadata = handler_call_details.invocation_metadata
        request_id = accept_request_id(_metadata_value(metadata, REQUEST_ID_HEADER))
        parent = tracing.extract(metadata)
        service, _, name = method.lstrip("/").rpartition("/")
        is_ingress = service == _INGRESS

        def unary(behavior: Unary) -> Unary:
            stats = self._metrics(method, "unary")

            async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
                stats.started.inc()
                start = time.perf_counter()
                error: BaseException | None = None
                info = CallInfo(request_id, rpc=name)
                with bound(info), tracing.span(f"grpc {service}/{name}", parent, kind="server"):
                    try:
                        response = await behavior(request, context)
                        if is_ingress:
                            _count_webhook(name, response)
                        return response
                    except BaseException as exc:
                        error = exc
                        raise
                    finally:
                        _finish(stats, context, error, start, info)

            return call

        def streaming(behavior: Streaming) -> Streaming:
            stats = self._metrics(method, "server_stream")
            open_streams = metrics.STREAMS_OPEN.labels(name)

            async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                stats.started.inc()
                open_streams.inc()
                start = time.perf_counter()
                error: BaseException | None = None
                info = CallInfo(request_id, rpc=name)
                with bound(info):
                    try:
                        async for item in behavior(request, context):
                            yield item
                    except BaseException as exc:
                        error = exc
                        raise
                    finally:
                        open_streams.dec()
                        _finish(stats, context, error, start, info)

            return call

        return wrap_handler(handler, unary=unary, streaming=streaming)


def _count_webhook(method_name: str, response: Any) -> None:
    outcome = getattr(response, "outcome", None)
    if not isinstance(outcome, int):
        return
    word = response.DESCRIPTOR.fields_by_name["outcome"].enum_type.values_by_number[outcome].name
    metrics.WEBHOOKS.labels(
        webhook_provider(method_name), word.removeprefix(_OUTCOME_PREFIX).lower()
    ).inc()


def _finish(
    stats: _MethodMetrics,
    context: grpc.aio.ServicerContext,
    error: BaseException | None,
    start: float,
    info: CallInfo,
) -> None:
    elapsed = time.perf_counter() - start
    code = _code_name(context, error)
    stats.handled(code).inc()
    stats.latency.observe(elapsed)
    # A line per call costs about as much as the rest of this interceptor's work together: OK
    # calls under a second are DEBUG (CONEXOES_ACCESS_LOG=all shows them), the rest INFO.
    level = logging.DEBUG if code == "OK" and elapsed < SLOW_CALL_S else logging.INFO
    if _access.isEnabledFor(level):
        _access.log(
            level,
            "%s %s",
            info.rpc,
            code,
            extra={"outcome": code, "duration_ms": round(elapsed * 1000, 2)},
        )
