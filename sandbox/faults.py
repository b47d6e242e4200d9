"""A loopback HTTP server that fails on cue, for testing retries, timeouts and error translation.

    async with run_fault_server() as server:
        server.script([Reply.error(500), Reply.rate_limited(3), Reply.json({"ok": True})],
                      path="/v21.0/123/events")
        ...  # point an httpx client at server.url
        assert len(server.requests_to("/v21.0/123/events")) == 3

Each path answers its script in order, one reply per request; a path with no reply left
answers 501 (final, so a test that calls more than it scripted fails loudly instead of being
retried). Real sockets, real uvicorn: a reset is a TCP RST, a slow reply really is slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@dataclass(frozen=True)
class Reply:
    """One scripted answer. Build with the class methods."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # sleep this long before answering
    reset: bool = False  # abort the connection (TCP RST) instead of answering

    @classmethod
    def json(
        cls, body: Any = None, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Reply:
        return cls(
            status=status,
            body=json.dumps({} if body is None else body).encode(),
            headers={"content-type": "application/json", **(headers or {})},
        )

    @classmethod
    def error(cls, status: int, body: Any = None) -> Reply:
        """Any status with a small JSON body (500, 503, 400, 404...)."""
        return cls.json({"message": f"scripted {status}"} if body is None else body, status)

    @classmethod
    def rate_limited(cls, retry_after: str | float | None = 1, body: Any = None) -> Reply:
        """429; `retry_after` may be seconds or an HTTP-date string; None sends no header."""
        headers = {} if retry_after is None else {"retry-after": _header_value(retry_after)}
        return cls.json(body or {"message": "Too Many Requests"}, 429, headers)

    @classmethod
    def slow(cls, seconds: float, then: Reply | None = None) -> Reply:
        """Answer `then` (200 {} by default) only after `seconds` of real time."""
        base = then or cls.json({})
        return cls(base.status, base.body, base.headers, delay_s=seconds)

    @classmethod
    def connection_reset(cls) -> Reply:
        return cls(reset=True)

    @classmethod
    def unauthorized(cls) -> Reply:
        return cls.json({"message": "Unauthorized", "statusCode": 401}, 401)

    @classmethod
    def graph_error(
        cls,
        code: int,
        *,
        status: int = 400,
        message: str = "scripted Graph error",
        subcode: int | None = None,
        type: str = "OAuthException",
        fbtrace_id: str = "AbCdEfGhIjK",
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Graph API error envelope (docs/providers.md, Meta Graph)."""
        error: dict[str, Any] = {
            "message": message,
            "type": type,
            "code": code,
            "fbtrace_id": fbtrace_id,
        }
        if subcode is not None:
            error["error_subcode"] = subcode
        return cls.json({"error": error}, status, headers)

    @classmethod
    def google_error(cls, status: int, reason: str, message: str = "scripted") -> Reply:
        """Google API error envelope (docs/providers.md, Google Calendar)."""
        body = {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"domain": "global", "reason": reason, "message": message}],
            }
        }
        return cls.json(body, status)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FaultServer:
    """The scripted app. `url` is set once it listens (see `run_fault_server`)."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self._scripts: dict[str, deque[Reply]] = {}
        self._uvicorn: uvicorn.Server | None = None
        self.app = Starlette(routes=[Route("/{rest:path}", self._handle, methods=_METHODS)])

    def script(self, replies: Sequence[Reply], *, path: str = "/") -> None:
        """Replace the replies `path` gives, in order."""
        self._scripts[path] = deque(replies)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def reset(self) -> None:
        """Forget every script and recorded request (between tests sharing one server)."""
        self._scripts.clear()
        self.requests.clear()

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        self.requests.append(
            RecordedRequest(request.method, path, request.url.query, dict(request.headers), body)
        )
        queue = self._scripts.get(path)
        if not queue:
            return Response(
                json.dumps({"message": f"no scripted reply for {request.method} {path}"}),
                501,
                media_type="application/json",
            )
        reply = queue.popleft()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.reset:
            self._abort(request)
            # Let uvicorn see the connection gone before it tries to answer.
            await asyncio.sleep(0)
        return Response(reply.body, reply.status, headers=dict(reply.headers))

    def _abort(self, request: Request) -> None:
        """Close this request's TCP connection with an RST (SO_LINGER 0), not a clean FIN."""
        client = request.client
        connections = self._uvicorn.server_state.connections if self._uvicorn else set()
        for conn in list(connections):
            if client is not None and getattr(conn, "client", None) == (client.host, client.port):
                transport = conn.transport
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
                return
        raise RuntimeError("fault server: connection to reset not found")


class _QuietServer(uvicorn.Server):
    # In-process server: Ctrl-C must stay with the test runner, not stop this server.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def run_fault_server(host: str = "127.0.0.1") -> AsyncIterator[FaultServer]:
    """Run a FaultServer under uvicorn on a free port for the duration of the block."""
    fault = FaultServer()
    config = uvicorn.Config(
        fault.app,
        host=host,
        port=0,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = _QuietServer(config)
    fault._uvicorn = server
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # startup failed: raise its error
                raise RuntimeError("fault server stopped before starting")
            await asyncio.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        fault.url = f"http://{host}:{port}"
        yield fault
    finally:
        server.should_exit = True
        await task


def _header_value(value: str | float) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)
