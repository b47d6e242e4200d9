"""Every call of the contract's services, guarded by one wrapper per method built once: error
mapping (errors.py), authentication (auth.py), the permission rule (server.auth.permissions)
and, for server-streaming calls, the cap on a caller's open streams (stream_caps.py).

These were four interceptors; grpc.aio runs each interceptor's `intercept_service` and each
wrapper's coroutine on every call, so one wrapper that does them in order (NUL check,
bearer token, rule, behaviour; every error mapped) does the same work with a third of the
per-call machinery. The rule for a method is looked up once, when its wrapper is built.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc

from server.auth.caller import Caller
from server.auth.permissions import Rule
from server.auth.tokens import TokenVerifier
from server.interceptors._wrap import (
    OPEN_SERVICES,
    Continuation,
    Streaming,
    Unary,
    WrappedHandlers,
    wrap_handler,
)
from server.interceptors.auth import bearer_token
from server.interceptors.context import set_caller
from server.interceptors.errors import abort_with, is_abort
from server.interceptors.stream_caps import StreamCaps
from server.interceptors.text import reject_nul_characters

GrantLookup = Callable[[Caller], Awaitable[frozenset[str]]]
IdentityHook = Callable[[Caller], Awaitable[None]]


class CallGuard(grpc.aio.ServerInterceptor):
    """Maps errors, authenticates the caller and enforces the method's rule (deny unlisted).

    Health and reflection answer without a token and pass untouched.
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        table: Mapping[str, Rule],
        grants: GrantLookup,
        on_identity: IdentityHook | None = None,
        stream_caps: StreamCaps | None = None,
    ) -> None:
        self._verifier = verifier
        self._table = table
        self._grants = grants
        self._on_identity = on_identity
        self._caps = stream_caps
        self._handlers = WrappedHandlers()

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if method.startswith(OPEN_SERVICES):
            return handler
        return self._handlers.get(method, handler, lambda: self._guarded(handler, method))

    async def _admit(self, rule: Rule, request: Any, context: grpc.aio.ServicerContext) -> None:
        reject_nul_characters(request)
        caller = self._verifier.verify(bearer_token(context.invocation_metadata()))
        if self._on_identity is not None:
            await self._on_identity(caller)
        set_caller(caller)
        await rule.check(caller, self._grants)

    def _guarded(
        self, handler: grpc.RpcMethodHandler[Any, Any] | None, method: str
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        rule = self._table.get(method) or Rule.deny_unlisted(method)
        admit = self._admit

        def unary(behavior: Unary) -> Unary:
            async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    await admit(rule, request, context)
                    return await behavior(request, context)
                except Exception as exc:
                    if is_abort(exc):
                        raise
                    await abort_with(exc, method, context)

            return call

        def streaming(behavior: Streaming) -> Streaming:
            if self._caps is not None:
                behavior = self._caps.capped(behavior, method)

            async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                try:
                    await admit(rule, request, context)
                    async for item in behavior(request, context):
                        yield item
                except Exception as exc:
                    if is_abort(exc):
                        raise
                    await abort_with(exc, method, context)

            return call

        return wrap_handler(handler, unary=unary, streaming=streaming)
