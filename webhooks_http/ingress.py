"""Provider webhook routes: read the exact request, hand it to WebhookIngressService, write back
the answer the server decided.

The sidecar judges nothing about the content (signatures need the exact bytes, and only the
server holds the secrets). Its own answers are limited to: 429 (rate limit), 413 (body over
the limit, never sent on), 400 (unreadable framing) and 503 with Retry-After when the server or
its database cannot take the event, so the provider retries instead of dropping it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import grpc
from google.protobuf.message import Message
from renove.conexoes.v1 import webhook_ingress_service_pb2 as pb
from renove.conexoes.v1 import webhook_ingress_service_pb2_grpc as pb_grpc
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from webhooks_http.ratelimit import (
    Network,
    TokenBucketLimiter,
    client_address,
    retry_after_header,
    too_many,
)
from webhooks_http.service_identity import ServiceIdentity
from webhooks_http.upstream import FINAL_CODES, error_reason, retry_after

_log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    pass


@dataclass(frozen=True)
class WebhookEndpoint:
    """One public route and the RPC that judges it."""

    path: str
    method: str
    rpc: str  # method name on WebhookIngressServiceStub
    wrap: Callable[[pb.RawHttpRequest, Request], Message]


ENDPOINTS: tuple[WebhookEndpoint, ...] = (
    WebhookEndpoint(
        "/webhooks/waha/{tenant_id}",
        "POST",
        "DeliverWahaWebhook",
        lambda raw, req: pb.DeliverWahaWebhookRequest(
            tenant_id=req.path_params["tenant_id"], request=raw
        ),
    ),
    WebhookEndpoint(
        "/webhooks/meta-leads",
        "GET",
        "VerifyMetaLeadsWebhook",
        lambda raw, _: pb.VerifyMetaLeadsWebhookRequest(request=raw),
    ),
    WebhookEndpoint(
        "/webhooks/meta-leads",
        "POST",
        "DeliverMetaLeadsWebhook",
        lambda raw, _: pb.DeliverMetaLeadsWebhookRequest(request=raw),
    ),
    WebhookEndpoint(
        "/webhooks/instagram",
        "GET",
        "VerifyInstagramWebhook",
        lambda raw, _: pb.VerifyInstagramWebhookRequest(request=raw),
    ),
    WebhookEndpoint(
        "/webhooks/instagram",
        "POST",
        "DeliverInstagramWebhook",
        lambda raw, _: pb.DeliverInstagramWebhookRequest(request=raw),
    ),
    WebhookEndpoint(
        "/webhooks/google-calendar",
        "POST",
        "DeliverGoogleCalendarWebhook",
        lambda raw, _: pb.DeliverGoogleCalendarWebhookRequest(request=raw),
    ),
)


async def read_body(request: Request, limit: int) -> bytes:
    """The exact body bytes, refusing more than `limit`: the declared length is checked before
    reading anything, the actual length while reading (a chunked body declares none).
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ValueError("invalid Content-Length")
        if int(declared) > limit:
            raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def raw_request(request: Request, body: bytes, remote: tuple[str, int]) -> pb.RawHttpRequest:
    """The request as received: headers and query in order with duplicates, body untouched."""
    scope = request.scope
    raw_query = scope.get("query_string", b"").decode("latin-1")
    headers = [
        pb.HttpHeader(name=k.decode("latin-1"), value=v.decode("latin-1"))
        for k, v in scope.get("headers", ())
    ]
    query = [
        pb.QueryParameter(name=k, value=v) for k, v in parse_qsl(raw_query, keep_blank_values=True)
    ]
    raw = pb.RawHttpRequest(
        method=request.method,
        path=scope.get("path", ""),
        raw_query=raw_query,
        query=query,
        headers=headers,
        body=body,
        remote_addr=f"{remote[0]}:{remote[1]}",
        host=request.headers.get("host", ""),
    )
    raw.received_at.FromDatetime(datetime.now(UTC))
    return raw


def unavailable(seconds: float) -> Response:
    return PlainTextResponse(
        "service temporarily unavailable; retry later",
        status_code=503,
        headers={"retry-after": retry_after_header(seconds)},
    )


class WebhookForwarder:
    """The endpoint behind every webhook route."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        identity: ServiceIdentity,
        limiter: TokenBucketLimiter,
        *,
        max_body_bytes: int,
        deadline_s: float = 10.0,
        trusted_proxies: tuple[Network, ...] = (),
    ) -> None:
        self._stub = pb_grpc.WebhookIngressServiceStub(channel)
        self._identity = identity
        self._limiter = limiter
        self._max_body = max_body_bytes
        self._deadline = deadline_s
        self._proxies = trusted_proxies

    def routes(self) -> list[Route]:
        by_path: dict[str, dict[str, WebhookEndpoint]] = {}
        for endpoint in ENDPOINTS:
            by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint
        return [
            Route(path, self._endpoint(methods), methods=list(methods))
            for path, methods in by_path.items()
        ]

    def _endpoint(self, methods: dict[str, WebhookEndpoint]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return await self.forward(request, methods[request.method])

        return endpoint

    async def forward(self, request: Request, endpoint: WebhookEndpoint) -> Response:
        remote = client_address(request.scope, self._proxies)
        wait = self._limiter.acquire(f"{remote[0]} {endpoint.path}")
        if wait is not None:
            return too_many(wait)
        try:
            body = await read_body(request, self._max_body)
        except BodyTooLarge:
            return PlainTextResponse("payload too large", status_code=413)
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        except ClientDisconnect:
            return Response(status_code=400)
        message = endpoint.wrap(raw_request(request, body, remote), request)
        call = getattr(self._stub, endpoint.rpc)
        try:
            reply = await call(message, metadata=self._identity.metadata(), timeout=self._deadline)
        except grpc.aio.AioRpcError as exc:
            return self._failed(endpoint, exc)
        answer: pb.RawHttpResponse = reply.response
        headers = {h.name: h.value for h in answer.headers}
        return Response(
            content=answer.body,
            status_code=answer.status_code or 200,
            media_type=answer.content_type or None,
            headers=headers,
        )

    def _failed(self, endpoint: WebhookEndpoint, exc: grpc.aio.AioRpcError) -> Response:
        code = exc.code()
        _log.warning(
            "%s failed: %s (%s); answering %s",
            endpoint.rpc,
            code.name,
            error_reason(exc),
            400 if code in FINAL_CODES else 503,
        )
        if code in FINAL_CODES:
            return PlainTextResponse("bad request", status_code=400)
        return unavailable(retry_after(exc))
