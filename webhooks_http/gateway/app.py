"""The gateway as an ASGI app: one generic endpoint for every annotated RPC.

Nothing here knows a service by name: the rules come from the descriptors, the message classes
from `message_factory`, and each RPC is called through `channel.unary_unary`/`unary_stream` by its
method path, so an RPC that gains a `google.api.http` annotation is served with no change here.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from starlette.applications import Starlette
from starlette.datastructures import URLPath
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import ASGIApp, Receive, Scope, Send

from webhooks_http.observability import request_metadata

from .errors import (
    error_headers,
    gateway_status,
    http_status_of,
    status_from_rpc_error,
    status_to_json,
)
from .openapi import build_openapi
from .rules import HttpRule, Router, collect_rules
from .sse import StreamResponse, wants_ndjson
from .stream_slots import DEFAULT_STREAMS_PER_ADDRESS, StreamSlots
from .transcode import ResponseEncoder, TranscodeError, build_request
from .wire import WireCodec

_log = logging.getLogger(__name__)

FORWARDED_HEADERS = ("authorization", "x-request-id")
# Response metadata a server sets for the browser (e.g. the OAuth browser-binding cookie):
# each value is a whole Set-Cookie header.
SET_COOKIE_METADATA = "x-set-cookie"
_METADATA_VALUE = re.compile(r"[\x20-\x7e]*")
_GRPC_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_GRPC_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


@dataclass(frozen=True, slots=True)
class _Method:
    rule: HttpRule
    request_class: type[Message]
    unary: Any  # grpc.aio.UnaryUnaryMultiCallable | None
    stream: Any  # grpc.aio.UnaryStreamMultiCallable | None


def build_gateway(
    files: Iterable[FileDescriptor],
    channel: grpc.aio.Channel,
    *,
    prefix_filter: str | None = "/api/",
    max_body_bytes: int = 1024 * 1024,
    default_deadline_s: float = 30.0,
    cors_origins: Sequence[str] = (),
    sse_keepalive_s: float = 15.0,
    openapi_path: str = "/api/openapi.json",
    title: str = "Renove Conexoes API",
    version: str = "v1",
    max_streams_per_address: int = DEFAULT_STREAMS_PER_ADDRESS,
    client_address: Callable[[Scope], str] | None = None,
) -> Starlette:
    """The HTTP/JSON gateway for every `google.api.http` rule in `files`.

    Add it as the sidecar's last route, so it sees what no other route took:
    `Starlette(routes=[*own_routes, CatchAll(gateway)])`. It matches full request paths (those
    of the contract), whatever the mount point.

    Args:
        files: the contract's file descriptors (e.g. `whatsapp_service_pb2.DESCRIPTOR`).
        channel: a grpc.aio channel to the server, used from the app's event loop.
        prefix_filter: serve only rules whose path starts with it; None serves every rule.
        max_body_bytes: larger request bodies get 413 without being read.
        default_deadline_s: deadline of unary calls; `X-Request-Timeout` (seconds) or
            `grpc-timeout` may shorten it. Streams have no deadline unless a header sets one.
        cors_origins: origins allowed by CORS; empty disables CORS.
        sse_keepalive_s: idle seconds before an SSE keep-alive comment.
        openapi_path: where the generated OpenAPI document is served.
        max_streams_per_address: open streams one client address may hold (429 beyond).
        client_address: the client's address from the scope (default: the socket peer).

    Raises:
        ValueError: a rule is invalid or two rules are ambiguous.
    """
    files = list(files)
    rules = collect_rules(files, prefix=prefix_filter)
    # Browser redirects (OAuth callbacks) are the sidecar's own routes: documented, not served.
    served = [rule for rule in rules if not rule.is_redirect]
    router = Router(served)
    codec = WireCodec(files)
    methods: dict[str, _Method] = {}
    for rule in served:
        if rule.grpc_path in methods:
            continue  # additional bindings share one callable
        desc = rule.method_descriptor
        request_class = message_factory.GetMessageClass(desc.input_type)
        response_class = message_factory.GetMessageClass(desc.output_type)
        kwargs: dict[str, Any] = {
            "request_serializer": request_class.SerializeToString,
            "response_deserializer": response_class.FromString,
        }
        unary = None if desc.server_streaming else channel.unary_unary(rule.grpc_path, **kwargs)
        stream = channel.unary_stream(rule.grpc_path, **kwargs) if desc.server_streaming else None
        methods[rule.grpc_path] = _Method(rule, request_class, unary, stream)
    document = build_openapi(rules, title=title, version=version, codec=codec)
    endpoint = _Endpoint(
        router,
        methods,
        codec,
        document,
        openapi_path,
        max_body_bytes,
        default_deadline_s,
        sse_keepalive_s,
        StreamSlots(max_streams_per_address),
        client_address or _peer,
    )
    middleware: list[Middleware] = []
    if cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=[
                    "authorization",
                    "content-type",
                    "x-request-id",
                    "x-request-timeout",
                    "grpc-timeout",
                    "accept",
                ],
                expose_headers=["retry-after", "x-request-id"],
                # Cookies (the OAuth browser binding) cross only to the configured origins.
                allow_credentials=True,
                max_age=600,
            )
        )
    return Starlette(routes=[CatchAll(endpoint)], middleware=middleware)


class CatchAll(BaseRoute):
    """A route that takes every HTTP request: how the sidecar adds the gateway after its own.

    Starlette's `Mount("")` would do, except that its path regex skips paths holding an
    encoded newline, which then get a text/plain 404 instead of the gateway's Status JSON.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return (Match.FULL, {}) if scope["type"] == "http" else (Match.NONE, {})

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class _TooLarge(Exception):
    pass


class _Rejected(Exception):
    def __init__(self, status: status_pb2.Status, http: int) -> None:
        super().__init__(status.message)
        self.status = status
        self.http = http


class _Endpoint:
    def __init__(
        self,
        router: Router,
        methods: dict[str, _Method],
        codec: WireCodec,
        document: dict[str, Any],
        openapi_path: str,
        max_body_bytes: int,
        default_deadline_s: float,
        keepalive_s: float,
        streams: StreamSlots,
        client_address: Callable[[Scope], str],
    ) -> None:
        self._streams = streams
        self._client_address = client_address
        self._router = router
        self._methods = methods
        self._document = _dumps(document)
        self._openapi_path = openapi_path
        self._max_body = max_body_bytes
        self._deadline = default_deadline_s
        self._keepalive = keepalive_s
        self._codec = codec
        self._encoder = ResponseEncoder(codec)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await self._handle(request)
        except Exception:  # a gateway bug must still answer in the one error shape
            _log.exception("gateway failure on %s %s", request.method, scope.get("path"))
            response = self._error(gateway_status(500, "internal gateway error"), 500)
        await response(scope, receive, send)

    async def _handle(self, request: Request) -> Any:
        raw_path = _raw_path(request.scope)
        if raw_path == self._openapi_path and request.method in ("GET", "HEAD"):
            return Response(self._document, media_type="application/json")
        match = self._router.match(request.method, raw_path)
        if match is None:
            allowed = self._router.allowed_methods(raw_path)
            if allowed:
                status = gateway_status(405, f"method {request.method} not allowed")
                return self._error(status, 405, {"allow": ", ".join(allowed)})
            return self._error(gateway_status(404, f"no route for {raw_path}"), 404)
        method = self._methods[match.rule.grpc_path]
        try:
            body = await self._read_body(request) if match.rule.body else b""
        except _TooLarge:
            limit = f"request body larger than {self._max_body} bytes"
            return self._error(gateway_status(413, limit), 413)
        query = parse_qsl(
            request.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
        )
        try:
            message = build_request(
                match.rule, method.request_class, match.path_params, query, body, self._codec
            )
            timeout = self._timeout(request, streaming=method.stream is not None)
            metadata = _metadata(request)
        except TranscodeError as exc:
            status = gateway_status(400, exc.message, violations=exc.violations)
            return self._error(status, 400)
        except _Rejected as exc:
            return self._error(exc.status, exc.http)
        echo = (
            {"x-request-id": request.headers["x-request-id"]}
            if "x-request-id" in request.headers
            else {}
        )
        if method.stream is not None:
            address = self._client_address(request.scope)
            if not self._streams.take(address, raw_path):
                status = status_pb2.Status(
                    code=code_pb2.RESOURCE_EXHAUSTED,
                    message=f"at most {self._streams.limit} open streams per client address",
                )
                return self._error(status, 429, {**echo, "retry-after": "5"})
            call = method.stream(message, metadata=metadata, timeout=timeout)
            return self._streams.holding(
                address,
                StreamResponse(
                    call,
                    lambda m: self._encoder.encode(m, match.rule.response_body),
                    error_json=self._status_json,
                    ndjson=wants_ndjson(request.headers.get("accept", "")),
                    keepalive_s=self._keepalive,
                    headers=echo,
                ),
            )
        try:
            call = method.unary(message, metadata=metadata, timeout=timeout)
            reply = await call
            initial = await call.initial_metadata()
        except grpc.aio.AioRpcError as error:
            status = status_from_rpc_error(error)
            return self._error(status, http_status_of(status), echo)
        payload = self._encoder.encode(reply, match.rule.response_body)
        response = Response(
            _dumps(payload),
            status_code=match.rule.success_status,
            media_type="application/json",
            headers=echo,
        )
        for key, value in initial or ():
            if key == SET_COOKIE_METADATA and isinstance(value, str):
                response.headers.append("set-cookie", value)
        return response

    def _status_json(self, status: status_pb2.Status) -> dict[str, Any]:
        return self._codec.error_json(status_to_json(status))

    def _error(
        self, status: status_pb2.Status, http: int, headers: dict[str, str] | None = None
    ) -> Response:
        return Response(
            _dumps(self._status_json(status)),
            status_code=http,
            media_type="application/json",
            headers={**(headers or {}), **error_headers(status)},
        )

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body:
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self._max_body:  # a lying or absent Content-Length
                raise _TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    def _timeout(self, request: Request, *, streaming: bool) -> float | None:
        """The call deadline: headers may shorten the default for unary calls, never extend it."""
        asked = _header_timeout(request)
        if streaming:
            return asked
        return self._deadline if asked is None else min(asked, self._deadline)


def _header_timeout(request: Request) -> float | None:
    seconds = request.headers.get("x-request-timeout")
    if seconds is not None:
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if not value > 0:
            raise TranscodeError(
                "X-Request-Timeout must be a positive number of seconds",
                [("X-Request-Timeout", "not a positive number")],
            )
        return value
    grpc_timeout = request.headers.get("grpc-timeout")
    if grpc_timeout is not None:
        match = _GRPC_TIMEOUT.match(grpc_timeout)
        if match is None:
            raise TranscodeError(
                "grpc-timeout must look like 500m or 5S", [("grpc-timeout", "not a gRPC timeout")]
            )
        return int(match.group(1)) * _GRPC_TIMEOUT_UNITS[match.group(2)]
    return None


# Far above any JWT we issue or accept, far below gRPC's 16 KiB metadata limit: a longer
# credential is not one (401), not a server that is out of resources (429).
MAX_AUTHORIZATION_CHARS = 8192


def _metadata(request: Request) -> tuple[tuple[str, str], ...]:
    """Forwarded headers as gRPC metadata; gRPC accepts only printable ASCII values."""
    metadata: list[tuple[str, str]] = []
    for name in FORWARDED_HEADERS:
        value = request.headers.get(name)
        if value is None:
            continue
        too_long = name == "authorization" and len(value) > MAX_AUTHORIZATION_CHARS
        if too_long or not _METADATA_VALUE.fullmatch(value):
            if name == "authorization":  # a credential we cannot even pass on: not signed in
                raise _Rejected(
                    status_pb2.Status(
                        code=code_pb2.UNAUTHENTICATED, message="malformed credentials"
                    ),
                    401,
                )
            raise TranscodeError(
                f"header {name} must be printable ASCII", [(name, "not printable ASCII")]
            )
        metadata.append((name, value))
    ours = request_metadata()  # the sidecar's request id (checked, or fresh) replaces the raw one
    if ours:
        metadata = [m for m in metadata if m[0] != "x-request-id"]
    return (*metadata, *ours)


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _raw_path(scope: Scope) -> str:
    raw = scope.get("raw_path")
    if isinstance(raw, bytes | bytearray):
        # Some servers (and httpx's ASGITransport) leave the query string in raw_path.
        return bytes(raw).split(b"?", 1)[0].decode("latin-1")
    return str(scope["path"])


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
