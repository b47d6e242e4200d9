"""A cap on the server-streaming calls one caller holds open at once (per server process).

A stream holds a task, a LISTEN subscription and buffers for as long as the client likes;
without a cap one token could open thousands. Beyond the cap the call is refused with
RESOURCE_EXHAUSTED (`STREAM_LIMIT_REACHED`, with RetryInfo), and the refusal is logged.
The sidecar caps streams per client address on its side as well.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import grpc

from server.auth.caller import Caller
from server.errors import ResourceExhausted
from server.interceptors._wrap import Streaming
from server.interceptors.context import current_caller

_log = logging.getLogger(__name__)
DEFAULT_STREAMS_PER_CALLER = 16


class StreamLimitReached(ResourceExhausted):
    reason = "STREAM_LIMIT_REACHED"


def caller_key(caller: Caller) -> str:
    """One identity: the user, or the service/super admin within its tenant."""
    return f"{caller.role.value}:{caller.tenant_id or '-'}:{caller.user_id or '-'}"


class StreamCaps:
    """Counts each caller's open streams; the call guard (guard.py) wraps every
    server-streaming behaviour with `capped`, inside authentication (it reads the caller)."""

    def __init__(self, per_caller: int = DEFAULT_STREAMS_PER_CALLER) -> None:
        self._limit = per_caller
        self._open: Counter[str] = Counter()

    def open_streams(self, caller: Caller) -> int:
        return self._open[caller_key(caller)]

    def capped(self, behavior: Streaming, method: str) -> Streaming:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            key = caller_key(current_caller())
            if self._open[key] >= self._limit:
                _log.warning(
                    "stream refused: %s already holds %d open streams (%s)",
                    key, self._open[key], method,
                )  # fmt: skip
                raise StreamLimitReached(
                    f"at most {self._limit} open streams per caller; close one first",
                    retry_after=5.0,
                )
            self._open[key] += 1
            try:
                async for item in behavior(request, context):
                    yield item
            finally:
                self._open[key] -= 1
                if self._open[key] <= 0:
                    del self._open[key]

        return call
