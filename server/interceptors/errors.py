"""Maps the domain error tree to gRPC statuses with google.rpc details, once, for every call."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from server.errors import DOMAIN, DomainError, InvalidArgument
from server.interceptors._wrap import (
    Continuation,
    Streaming,
    Unary,
    WrappedHandlers,
    wrap_handler,
)
from server.interceptors.outages import as_unavailable
from server.interceptors.text import reject_nul_characters
from server.security.redaction import redact

_log = logging.getLogger(__name__)


def to_status(error: DomainError) -> status_pb2.Status:
    status = status_pb2.Status(code=error.grpc_code.value[0], message=redact(error.message))
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN)
    info.metadata.update({k: redact(str(v)) for k, v in error.metadata.items()})
    status.details.add().Pack(info)
    if isinstance(error, InvalidArgument) and error.violations:
        bad = error_details_pb2.BadRequest()
        for v in error.violations:
            bad.field_violations.add(field=v.field, description=v.description)
        status.details.add().Pack(bad)
    if error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(error.retry_after * 1000))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return status


async def _abort(error: BaseException, method: str, context: grpc.aio.ServicerContext) -> NoReturn:
    outage = as_unavailable(error)
    if outage is not None:
        _log.warning("database unavailable in %s: %s", method, type(error).__name__)
        error = outage
    if isinstance(error, DomainError):
        await context.abort_with_status(rpc_status.to_status(to_status(error)))
    if isinstance(error, NotImplementedError):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not available yet")
    _log.exception("unexpected error in %s", method, exc_info=error)
    status = status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")
    await context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort returned")  # pragma: no cover - abort always raises


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self._handlers = WrappedHandlers()

    async def intercept_service(
        self,
        continuation: Continuation,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        return self._handlers.get(method, handler, lambda: _mapping(handler, method))


def _mapping(
    handler: grpc.RpcMethodHandler[Any, Any] | None, method: str
) -> grpc.RpcMethodHandler[Any, Any] | None:
    """`handler` with domain errors mapped to statuses and NUL characters refused."""

    def unary(behavior: Unary) -> Unary:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                reject_nul_characters(request)
                return await behavior(request, context)
            except Exception as exc:
                if _is_abort(exc):
                    raise
                await _abort(exc, method, context)

        return call

    def streaming(behavior: Streaming) -> Streaming:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                reject_nul_characters(request)
                async for item in behavior(request, context):
                    yield item
            except Exception as exc:
                if _is_abort(exc):
                    raise
                await _abort(exc, method, context)

        return call

    return wrap_handler(handler, unary=unary, streaming=streaming)


def _is_abort(exc: BaseException) -> bool:
    # context.abort() raises grpc.aio.AbortError; it must pass through untouched.
    return isinstance(exc, grpc.aio.AbortError | grpc.aio.UsageError)
