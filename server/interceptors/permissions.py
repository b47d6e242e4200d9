"""Enforces the permission table (server.auth.permissions) on every call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc

from server.auth.caller import Caller
from server.auth.permissions import Rule
from server.interceptors._wrap import Continuation, checking, wrap_handler
from server.interceptors.auth import OPEN_SERVICES
from server.interceptors.context import current_caller

GrantLookup = Callable[[Caller], Awaitable[frozenset[str]]]


class PermissionInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, table: Mapping[str, Rule], grants: GrantLookup) -> None:
        self._table = table
        self._grants = grants

    async def intercept_service(
        self,
        continuation: Continuation,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if method.startswith(OPEN_SERVICES):
            return handler

        async def authorize(name: str, _request: Any, _context: grpc.aio.ServicerContext) -> None:
            rule = self._table.get(name, Rule.deny_unlisted(name))
            await rule.check(current_caller(), self._grants)

        unary, streaming = checking(authorize, method)
        return wrap_handler(handler, unary=unary, streaming=streaming)
