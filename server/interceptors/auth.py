"""Authenticates every call from its bearer token and records the caller for the call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from server.auth.caller import Caller
from server.auth.tokens import TokenVerifier
from server.errors import Unauthenticated
from server.interceptors._wrap import Continuation, checking, wrap_handler
from server.interceptors.context import set_caller

# Standard infrastructure services answer without a token (load balancers, grpcurl).
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

IdentityHook = Callable[[Caller], Awaitable[None]]


def bearer_token(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
    raise Unauthenticated("missing authorization metadata")


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, verifier: TokenVerifier, on_identity: IdentityHook | None = None) -> None:
        self._verifier = verifier
        self._on_identity = on_identity

    async def intercept_service(
        self,
        continuation: Continuation,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if method.startswith(OPEN_SERVICES):
            return handler

        async def authenticate(
            _method: str, _request: Any, context: grpc.aio.ServicerContext
        ) -> None:
            caller = self._verifier.verify(bearer_token(context.invocation_metadata()))
            if self._on_identity is not None:
                await self._on_identity(caller)
            set_caller(caller)

        unary, streaming = checking(authenticate, method)
        return wrap_handler(handler, unary=unary, streaming=streaming)
