"""Enforces the permission table (server.auth.permissions) on every call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc

from server.auth.caller import Caller
from server.auth.permissions import Rule
from server.interceptors._wrap import CheckingInterceptor
from server.interceptors.context import current_caller

GrantLookup = Callable[[Caller], Awaitable[frozenset[str]]]


class PermissionInterceptor(CheckingInterceptor):
    def __init__(self, table: Mapping[str, Rule], grants: GrantLookup) -> None:
        self._table = table
        self._grants = grants

    async def check(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        rule = self._table.get(method, Rule.deny_unlisted(method))
        await rule.check(current_caller(), self._grants)
