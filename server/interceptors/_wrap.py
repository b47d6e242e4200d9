"""Wraps a grpc.aio method handler's behaviour.

grpc.aio interceptors only see the handler, not the call, so anything that must run per call
(authentication, permission checks, error mapping) wraps the returned handler's behaviour.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import grpc

Unary = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
Streaming = Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]
# (method name, request, context) -> None; raises to refuse the call.
Check = Callable[[str, Any, grpc.aio.ServicerContext], Awaitable[None]]
Continuation = Callable[
    [grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any] | None"]
]


def wrap_handler(
    handler: grpc.RpcMethodHandler[Any, Any] | None,
    *,
    unary: Callable[[Unary], Unary],
    streaming: Callable[[Streaming], Streaming],
) -> grpc.RpcMethodHandler[Any, Any] | None:
    if handler is None:
        return None
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            unary(cast(Unary, handler.unary_unary)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            streaming(cast(Streaming, handler.unary_stream)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    # The contract has no client-streaming RPCs; anything else passes through untouched.
    return handler


class WrappedHandlers:
    """Each method's wrapped handler, built once: the wrapping is the same on every call.

    Keyed by method and checked against the inner handler's identity, so a handler that the
    next interceptor or the server replaces is wrapped afresh. Only methods that have a
    handler are kept (a client's unknown method names are not remembered).
    """

    def __init__(self) -> None:
        self._by_method: dict[str, tuple[Any, Any]] = {}

    def get(
        self,
        method: str,
        handler: grpc.RpcMethodHandler[Any, Any] | None,
        build: Callable[[], grpc.RpcMethodHandler[Any, Any] | None],
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        if handler is None:
            return None
        hit = self._by_method.get(method)
        if hit is not None and hit[0] is handler:
            return cast("grpc.RpcMethodHandler[Any, Any] | None", hit[1])
        wrapped = build()
        self._by_method[method] = (handler, wrapped)
        return wrapped


# Standard infrastructure services answer without a token (load balancers, grpcurl).
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
