"""Authenticates every call from its bearer token and records the caller for the call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from server.auth.caller import Caller
from server.auth.tokens import TokenVerifier
from server.errors import Unauthenticated
from server.interceptors._wrap import CheckingInterceptor
from server.interceptors.context import set_caller

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


class AuthInterceptor(CheckingInterceptor):
    def __init__(self, verifier: TokenVerifier, on_identity: IdentityHook | None = None) -> None:
        self._verifier = verifier
        self._on_identity = on_identity

    async def check(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        caller = self._verifier.verify(bearer_token(context.invocation_metadata()))
        if self._on_identity is not None:
            await self._on_identity(caller)
        set_caller(caller)
