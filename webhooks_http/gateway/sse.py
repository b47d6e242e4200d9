"""Server-streaming RPCs over HTTP: Server-Sent Events, or newline-delimited JSON.

SSE (the default): every message is one event, `data: <json>\\n\\n`; a failure mid-stream is
`event: error\\ndata: <google.rpc.Status json>\\n\\n` and ends the stream; an idle stream gets a
`: keep-alive` comment every `keepalive_s`. With `Accept: application/x-ndjson` every line is
`{"result": <json>}` or, last, `{"error": <status>}` (grpc-gateway's framing).

A call that fails before its first message is answered with the mapped HTTP status and the
Status JSON, like a unary call, so a client can tell "not allowed" from "stream broke".
A client that goes away cancels the gRPC call at once, even while the stream is idle.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2
from starlette.types import Message as AsgiMessage
from starlette.types import Receive, Scope, Send

from .errors import error_headers, http_status_of, status_from_rpc_error, status_to_json

NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"


@dataclass(frozen=True, slots=True)
class _End:
    pass


@dataclass(frozen=True, slots=True)
class _Failure:
    status: status_pb2.Status


_Item = Message | _End | _Failure
_TIMEOUT = object()
_DISCONNECTED = object()


def wants_ndjson(accept: str) -> bool:
    return NDJSON in accept.lower()


class StreamResponse:
    """An ASGI response that relays a `grpc.aio` server-streaming call."""

    def __init__(
        self,
        call: grpc.aio.UnaryStreamCall,
        to_json: Callable[[Message], Any],
        *,
        error_json: Callable[[status_pb2.Status], Any] = status_to_json,
        ndjson: bool,
        keepalive_s: float,
        headers: dict[str, str],
    ) -> None:
        self._call = call
        self._to_json = to_json
        self._error_json = error_json
        self._ndjson = ndjson
        self._keepalive_s = keepalive_s
        self._headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Bounded, so a slow client slows the stream down instead of growing memory.
        queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=64)
        pump = asyncio.create_task(self._pump(queue))
        watcher = asyncio.create_task(_wait_for_disconnect(receive))
        getter: asyncio.Task[_Item] | None = None
        try:
            getter = asyncio.create_task(queue.get())
            first = await _next(getter, watcher, self._keepalive_s)
            if first is _DISCONNECTED:
                return
            if isinstance(first, _Failure):
                body = _dumps(self._error_json(first.status))
                await _send_error_response(send, first.status, body, self._headers)
                return
            await send(self._start())
            item: object = first
            while True:
                if item is _DISCONNECTED:
                    return
                if item is _TIMEOUT:
                    chunk = b"" if self._ndjson else b": keep-alive\n\n"
                else:
                    getter = None
                    chunk = self._frame(item)  # type: ignore[arg-type]
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if isinstance(item, _End | _Failure):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                if getter is None:
                    getter = asyncio.create_task(queue.get())
                item = await _next(getter, watcher, self._keepalive_s)
        except OSError:
            return  # the client went away while we were writing
        finally:
            self._call.cancel()  # no-op when the call already finished
            for task in (getter, watcher, pump):
                if task is not None:
                    task.cancel()
            await asyncio.gather(
                *(t for t in (getter, watcher, pump) if t is not None), return_exceptions=True
            )

    async def _pump(self, queue: asyncio.Queue[_Item]) -> None:
        try:
            async for message in self._call:
                await queue.put(message)
        except grpc.aio.AioRpcError as error:
            await queue.put(_Failure(status_from_rpc_error(error)))
            return
        await queue.put(_End())

    def _start(self) -> AsgiMessage:
        content_type = NDJSON if self._ndjson else f"{EVENT_STREAM}; charset=utf-8"
        headers = {
            **self._headers,
            "content-type": content_type,
            "cache-control": "no-cache",
            "x-accel-buffering": "no",  # nginx must not hold events back
        }
        return {
            "type": "http.response.start",
            "status": 200,
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }

    def _frame(self, item: _Item) -> bytes:
        if isinstance(item, _End):
            return b""
        if isinstance(item, _Failure):
            payload = _dumps(self._error_json(item.status))
            if self._ndjson:
                return b'{"error":' + payload + b"}\n"
            return b"event: error\ndata: " + payload + b"\n\n"
        payload = _dumps(self._to_json(item))
        if self._ndjson:
            return b'{"result":' + payload + b"}\n"
        return b"data: " + payload + b"\n\n"


async def _next(getter: asyncio.Task[_Item], watcher: asyncio.Task[None], idle_s: float) -> object:
    """The next queued item, or _TIMEOUT after `idle_s` idle seconds, or _DISCONNECTED."""
    done, _ = await asyncio.wait(
        {getter, watcher}, timeout=idle_s, return_when=asyncio.FIRST_COMPLETED
    )
    if watcher in done:
        return _DISCONNECTED
    if getter in done:
        return getter.result()
    return _TIMEOUT


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _send_error_response(
    send: Send, status: status_pb2.Status, body: bytes, extra: dict[str, str]
) -> None:
    headers = {**extra, **error_headers(status), "content-type": "application/json"}
    await send(
        {
            "type": "http.response.start",
            "status": http_status_of(status),
            "headers": [
                *[(k.lower().encode(), v.encode()) for k, v in headers.items()],
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
