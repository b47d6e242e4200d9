"""Keeps, for the secrecy scan (test_secrecy_scan.py), which pytest runs last (its folder sorts
after every other), what the suite's in-process server, worker and sidecar wrote to the logs,
and scans every response the tests received from us as it arrives:

- every gRPC message (unary and streamed) and every gRPC error's details and trailers, on any
  `grpc.aio` channel;
- every body (and redirect Location) answered on the sidecar's own routes (`/api/...`, the
  JSON gateway and the OAuth callbacks, and `/webhooks/...`), through any httpx client.
  Provider calls and the sandbox's control answers are not ours: they carry tokens by design.

The hooks are installed while pytest collects, so they see every test that runs after it.
Responses are scanned on arrival and only findings are kept (the suite receives far more
than is worth holding). The log handler carries the redaction filter the service puts on every
handler (server/security/redaction.py): the scan checks the lines as they would be written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
from grpc.aio import _channel

from server.security.redaction import RedactingFilter
from tests.zz_audit.detectors import findings

MAX_LINES = 200_000
LOG_LINES: list[str] = []
OUR_PATHS = ("/api/", "/webhooks/")


@dataclass
class Responses:
    seen: int = 0
    chars: int = 0
    found: list[str] = field(default_factory=list)

    def scan(self, source: str, blob: str) -> None:
        self.seen += 1
        self.chars += len(blob)
        self.found.extend(findings(source, blob))


RESPONSES = Responses()


class _Keep(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if len(LOG_LINES) >= MAX_LINES:
            return
        try:
            LOG_LINES.append(self.format(record))
        except Exception:  # a bad format string is not ours to judge here
            LOG_LINES.append(f"{record.name}: {record.msg}")


_handler = _Keep(level=logging.DEBUG)
_handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
_handler.addFilter(RedactingFilter())
logging.getLogger().addHandler(_handler)


def _scanning(method: str, deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    # A message's strings are its bytes verbatim: scanning the wire form finds any of them.
    def deserializer(data: bytes) -> Any:
        RESPONSES.scan(f"gRPC {method} response", data.decode("utf-8", "replace"))
        return deserialize(data) if deserialize is not None else data

    return deserializer


def _wrap_multicallable(name: str) -> None:
    original = getattr(_channel.Channel, name)

    def make(
        self: _channel.Channel,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return original(
            self,
            method,
            request_serializer,
            _scanning(method, response_deserializer),
            _registered_method,
        )

    setattr(_channel.Channel, name, make)


for _kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
    _wrap_multicallable(_kind)

_error_init = grpc.aio.AioRpcError.__init__


def _scanned_error(self: grpc.aio.AioRpcError, *args: Any, **kwargs: Any) -> None:
    _error_init(self, *args, **kwargs)
    trailers = " ".join(f"{k}={v!r}" for k, v in (self.trailing_metadata() or ()))
    RESPONSES.scan(f"gRPC error {self.code()}", f"{self.details()} {trailers}")


grpc.aio.AioRpcError.__init__ = _scanned_error  # type: ignore[method-assign]


def _scan_http(response: httpx.Response) -> None:
    """Scans a read answer of ours once (a transport may read it before the client has
    attached its request: then the client's `send` scans it)."""
    request = getattr(response, "_request", None)
    if request is None or getattr(response, "_secrecy_scanned", False):
        return
    response._secrecy_scanned = True  # type: ignore[attr-defined]
    if request.url.path.startswith(OUR_PATHS):
        where = response.headers.get("location", "")
        body = response.content.decode("utf-8", "replace")
        RESPONSES.scan(f"HTTP {request.url.path} answer", f"{where} {body}")


_aread = httpx.Response.aread
_read = httpx.Response.read
_async_send = httpx.AsyncClient.send
_send = httpx.Client.send


async def _scanned_aread(self: httpx.Response) -> bytes:
    content = await _aread(self)
    _scan_http(self)
    return content


def _scanned_read(self: httpx.Response) -> bytes:
    content = _read(self)
    _scan_http(self)
    return content


async def _scanned_async_send(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> Any:
    response = await _async_send(self, *args, **kwargs)
    if hasattr(response, "_content"):  # read already (not streamed)
        _scan_http(response)
    return response


def _scanned_send(self: httpx.Client, *args: Any, **kwargs: Any) -> Any:
    response = _send(self, *args, **kwargs)
    if hasattr(response, "_content"):
        _scan_http(response)
    return response


httpx.Response.aread = _scanned_aread  # type: ignore[method-assign]
httpx.Response.read = _scanned_read  # type: ignore[method-assign]
httpx.AsyncClient.send = _scanned_async_send  # type: ignore[method-assign]
httpx.Client.send = _scanned_send  # type: ignore[method-assign]
