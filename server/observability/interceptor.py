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
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import grpc
from prometheus_client import Counter

from server.interceptors._wrap import (
    OPEN_SERVICES,
    Continuation,
    Streaming,
    Unary,
    wrap_handler,
)
from server.observability import metrics, tracing
from server.observability.call_metrics import MethodStats
from server.observability.context import (
    REQUEST_ID_HEADER,
    CallInfo,
    accept_request_id,
    bind,
    current_call,
)

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


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """Binds the call's facts (request id, RPC name, trace parent) from the metadata grpc
    already decoded for the interceptors, and returns the method's wrapped handler, built once
    per method. grpc.aio runs an RPC's interceptors and its handler in one task, so what is
    bound here is the handler's current call, and nobody else's.

    Every line here runs on every RPC: it is kept to what the metrics and logs need.
    """

    def __init__(self) -> None:
        # method -> (the inner handler it wraps, the wrapped handler, the RPC's name)
        self._wrapped: dict[str, tuple[Any, Any, str]] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        hit = self._wrapped.get(method)
        if hit is None or hit[0] is not handler:
            if handler is None or method.startswith(OPEN_SERVICES):
                return handler
            name = method.rpartition("/")[2]
            hit = self._wrapped[method] = (handler, _observed(handler, method), name)
        metadata = handler_call_details.invocation_metadata
        info = CallInfo(accept_request_id(_metadata_value(metadata, REQUEST_ID_HEADER)), hit[2])
        if tracing.enabled():
            info.trace_parent = tracing.extract(metadata)
        bind(info)
        return cast("grpc.RpcMethodHandler[Any, Any]", hit[1])


def _observed(
    handler: grpc.RpcMethodHandler[Any, Any], method: str
) -> grpc.RpcMethodHandler[Any, Any] | None:
    service, _, name = method.lstrip("/").rpartition("/")
    count_webhook = _webhook_counter(name) if service == _INGRESS else None
    if tracing.enabled():  # configured at process start, before any call
        return _traced(handler, service, name, count_webhook)

    def unary(behavior: Unary) -> Unary:
        stats = metrics.GRPC.method(service, name, "unary")

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            stats.started += 1
            start = time.perf_counter()
            try:
                response = await behavior(request, context)
            except BaseException as exc:
                _finish(stats, context, exc, start, name)
                raise
            _finish(stats, context, None, start, name)
            if count_webhook is not None:
                count_webhook(response)
            return response

        return call

    def streaming(behavior: Streaming) -> Streaming:
        stats = metrics.GRPC.method(service, name, "server_stream")
        open_streams = metrics.STREAMS_OPEN.labels(name)

        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            stats.started += 1
            open_streams.inc()
            error: BaseException | None = None
            start = time.perf_counter()
            try:
                async for item in behavior(request, context):
                    yield item
            except BaseException as exc:
                error = exc
                raise
            finally:
                open_streams.dec()
                _finish(stats, context, error, start, name)

        return call

    return wrap_handler(handler, unary=unary, streaming=streaming)


def _traced(
    handler: grpc.RpcMethodHandler[Any, Any],
    service: str,
    name: str,
    count_webhook: Callable[[Any], None] | None,
) -> grpc.RpcMethodHandler[Any, Any] | None:
    """The same, inside a server span continuing the caller's trace, with the call's outcome."""
    span_name = f"grpc {service}/{name}"

    def unary(behavior: Unary) -> Unary:
        stats = metrics.GRPC.method(service, name, "unary")

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            stats.started += 1
            error: BaseException | None = None
            start = time.perf_counter()
            with tracing.span(span_name, _parent(), kind="server") as span:
                try:
                    response = await behavior(request, context)
                    if count_webhook is not None:
                        count_webhook(response)
                    return response
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    tracing.set_outcome(span, _finish(stats, context, error, start, name))

        return call

    def streaming(behavior: Streaming) -> Streaming:
        stats = metrics.GRPC.method(service, name, "server_stream")
        open_streams = metrics.STREAMS_OPEN.labels(name)

        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            stats.started += 1
            open_streams.inc()
            error: BaseException | None = None
            start = time.perf_counter()
            # One span for the stream's whole life (not one per message), with its outcome.
            with tracing.span(span_name, _parent(), kind="server") as span:
                try:
                    async for item in behavior(request, context):
                        yield item
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    open_streams.dec()
                    tracing.set_outcome(span, _finish(stats, context, error, start, name))

        return call

    return wrap_handler(handler, unary=unary, streaming=streaming)


def _parent() -> Any:
    info = current_call()
    return info.trace_parent if info is not None else None


def _webhook_counter(method_name: str) -> Callable[[Any], None]:
    """Counts a delivery's outcome (the response's `outcome` enum) by provider; each
    outcome's child is bound once."""
    provider = webhook_provider(method_name)
    children: dict[int, Counter] = {}

    def count(response: Any) -> None:
        outcome = getattr(response, "outcome", None)
        if not isinstance(outcome, int):
            return
        child = children.get(outcome)
        if child is None:
            values = response.DESCRIPTOR.fields_by_name["outcome"].enum_type.values_by_number
            word = values[outcome].name.removeprefix(_OUTCOME_PREFIX).lower()
            child = children[outcome] = metrics.WEBHOOKS.labels(provider, word)
        child.inc()

    return count


def _finish(
    stats: MethodStats,
    context: grpc.aio.ServicerContext,
    error: BaseException | None,
    start: float,
    name: str,
) -> str:
    elapsed = time.perf_counter() - start
    code = _code_name(context, error)
    stats.finish(code, elapsed)
    # A line per call costs about as much as the rest of this interceptor's work together: OK
    # calls under a second are DEBUG (CONEXOES_ACCESS_LOG=all shows them), the rest INFO.
    level = logging.DEBUG if code == "OK" and elapsed < SLOW_CALL_S else logging.INFO
    if _access.isEnabledFor(level):
        _access.log(
            level,
            "%s %s",
            name,
            code,
            extra={"outcome": code, "duration_ms": round(elapsed * 1000, 2)},
        )
    return code
