"""The public port's answer to slow clients: headers and bodies must arrive in bounded time.

uvicorn waits forever for a request's headers (its keep-alive timer runs only between
requests) and for the rest of a body, so a client dripping one byte at a time holds a
connection, a task and a buffer for as long as it likes. This protocol, uvicorn's own
httptools protocol with three timers, cuts such clients off:

- headers: the whole head of a request within `header_timeout_s` of its first byte (or of the
  connection, for one that sends nothing);
- body: progress at least every `body_idle_timeout_s`, and the whole body within
  `body_total_timeout_s` of the end of the headers.

A request cut off before its response started gets `408 Request Timeout`; the connection is
closed either way (the app then sees `http.disconnect`). Time spent with reading paused by
flow control (the app is not reading) is not held against the client.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_log = logging.getLogger(__name__)

_408 = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: 16\r\n\r\n"
    b"request timeout\n"
)


@dataclass(frozen=True)
class SlowClientLimits:
    header_timeout_s: float = 10.0
    body_idle_timeout_s: float = 10.0
    body_total_timeout_s: float = 30.0


class _GuardedProtocol(HttpToolsProtocol):
    limits = SlowClientLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_deadline = 0.0

    # -- headers -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # the next request on a kept-alive connection
            self._arm_head()

    def on_headers_complete(self) -> None:
        self._cancel_head()
        super().on_headers_complete()
        self._body_deadline = self.loop.time() + self.limits.body_total_timeout_s
        self._arm_body()

    # -- body --------------------------------------------------------------------------------

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm_body()

    def on_message_complete(self) -> None:
        self._cancel_body()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head()
        self._cancel_body()
        super().connection_lost(exc)

    # -- timers ------------------------------------------------------------------------------

    def _arm_head(self) -> None:
        self._cancel_head()
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_late)

    def _cancel_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _arm_body(self) -> None:
        self._cancel_body()
        left = self._body_deadline - self.loop.time()
        self._body_timer = self.loop.call_later(
            max(0.0, min(self.limits.body_idle_timeout_s, left)), self._body_late
        )

    def _cancel_body(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        self._cut("request headers")

    def _body_late(self) -> None:
        self._body_timer = None
        if (
            self.flow is not None
            and self.flow.read_paused
            and self.loop.time() < (self._body_deadline)
        ):
            self._arm_body()  # we stopped reading, not the client
            return
        self._cut("request body")

    def _cut(self, what: str) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown"
        _log.warning("slow client %s: %s not received in time; connection closed", client, what)
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            self.transport.write(_408)
        if cycle is not None:
            cycle.keep_alive = False
        self.transport.close()


def guarded_httptools(limits: SlowClientLimits | None = None) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with these slow-client limits (uvicorn's `http=`)."""
    chosen = limits or SlowClientLimits()
    return type("GuardedHttpToolsProtocol", (_GuardedProtocol,), {"limits": chosen})
