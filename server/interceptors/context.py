"""The authenticated caller of the current RPC, set by the auth interceptor."""

from __future__ import annotations

import contextvars

from server.auth.caller import Caller
from server.errors import Unauthenticated
from server.observability.context import note_tenant

_current: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("caller", default=None)


def set_caller(caller: Caller) -> contextvars.Token[Caller | None]:
    note_tenant(caller.tenant_id)  # the call's log lines name the tenant from here on
    return _current.set(caller)


def current_caller() -> Caller:
    caller = _current.get()
    if caller is None:
        raise Unauthenticated("no authenticated caller")
    return caller


def reset_caller(token: contextvars.Token[Caller | None]) -> None:
    _current.reset(token)
