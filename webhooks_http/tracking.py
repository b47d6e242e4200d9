"""The e-mail open-tracking pixel: mail clients fetch it without credentials, so the sidecar
serves it before the JSON gateway and tells the server (RecordEmailOpen, as its service
identity). The image is always the same 1x1 GIF, never cached, whatever the server said:
a reader's mail client must not learn anything from it."""

from __future__ import annotations

import base64
import logging

import grpc
from renove.conexoes.v1 import email_service_pb2, email_service_pb2_grpc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webhooks_http.ratelimit import Network, TokenBucketLimiter, client_address
from webhooks_http.service_identity import ServiceIdentity

_log = logging.getLogger(__name__)
PIXEL_PATH = "/api/v1/conexoes/email/abertura/{token}"
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_HEADERS = {"cache-control": "no-store, no-cache, must-revalidate, private", "pragma": "no-cache"}
_MAX_TOKEN = 1024


class OpenPixel:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        identity: ServiceIdentity,
        limiter: TokenBucketLimiter,
        *,
        deadline_s: float = 5.0,
        trusted_proxies: tuple[Network, ...] = (),
    ) -> None:
        self._stub = email_service_pb2_grpc.EmailServiceStub(channel)
        self._identity = identity
        self._limiter = limiter
        self._deadline = deadline_s
        self._proxies = trusted_proxies

    def routes(self) -> list[Route]:
        return [Route(PIXEL_PATH, self.pixel, methods=["GET", "HEAD"])]

    async def pixel(self, request: Request) -> Response:
        token = request.path_params["token"]
        remote = client_address(request.scope, self._proxies)
        counted = (
            request.method == "GET"
            and len(token) <= _MAX_TOKEN
            and self._limiter.acquire(f"{remote[0]} {PIXEL_PATH}") is None
        )
        if counted:
            try:
                await self._stub.RecordEmailOpen(
                    email_service_pb2.RecordEmailOpenRequest(
                        token=token, user_agent=request.headers.get("user-agent", "")[:512]
                    ),
                    metadata=self._identity.metadata(),
                    timeout=self._deadline,
                )
            except grpc.aio.AioRpcError as exc:
                _log.warning("RecordEmailOpen failed: %s", exc.code().name)
        return Response(GIF, media_type="image/gif", headers=_HEADERS)
