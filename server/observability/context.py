"""What the current call or job is, for its log lines: request id, tenant, RPC or operation.

One `CallInfo` per RPC (set by the observability interceptor) or per job attempt (set by the
worker). It is mutable on purpose: the tenant becomes known only after authentication, deeper
in the same call, and the interceptor's closing log line must see it.
"""

from __future__ import annotations

import contextvars
import itertools
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

REQUEST_ID_HEADER = "x-request-id"
# A caller's id is kept only when it is short and plain (it lands in logs and job rows).
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@dataclass
class CallInfo:
    request_id: str
    rpc: str = ""
    operation: str = ""
    tenant: str = ""
    trace_parent: Any = None  # the caller's trace context, when tracing is on


_current: contextvars.ContextVar[CallInfo | None] = contextvars.ContextVar(
    "conexoes_call", default=None
)


# A fresh id is this process's random prefix and a counter: unique without a random draw per
# call (uuid4 reads the OS's random source each time).
_PREFIX = uuid.uuid4().hex[:16]
_counter = itertools.count(1)


def new_request_id() -> str:
    return f"{_PREFIX}{next(_counter):016x}"


def accept_request_id(value: str | bytes | None) -> str:
    """The caller's request id when it is acceptable, else a fresh one."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if value and _ACCEPTABLE.fullmatch(value):
        return value
    return new_request_id()


def current_call() -> CallInfo | None:
    return _current.get()


def current_request_id() -> str | None:
    info = _current.get()
    return info.request_id if info is not None else None


def note_tenant(tenant_id: object) -> None:
    """Records the authenticated tenant on the current call (no-op outside a call)."""
    info = _current.get()
    if info is not None and tenant_id is not None:
        info.tenant = str(tenant_id)


def bind(info: CallInfo) -> None:
    """Makes `info` the current call for the rest of the running task's context: for an RPC,
    whose interceptors and handler run in a task of their own (the hot path's `bound`)."""
    _current.set(info)


@contextmanager
def bound(info: CallInfo) -> Iterator[CallInfo]:
    token = _current.set(info)
    try:
        yield info
    finally:
        _current.reset(token)
