"""OAuth redirect callbacks: the provider sends the browser here with `code` and `state`; the
server exchanges them (Handle*OAuthCallback, as the sidecar's service identity) and says where
the browser goes next. These routes come before the JSON gateway, which would otherwise answer
the browser with JSON.

The browser always lands on the frontend: on a server failure the redirect carries the error's
ErrorInfo reason instead, and a redirect URL outside the frontend is never followed (the server
builds it, but an open redirect on a public callback is worth a second check).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from renove.conexoes.v1 import (
    email_service_pb2,
    email_service_pb2_grpc,
    google_calendar_service_pb2,
    google_calendar_service_pb2_grpc,
    instagram_service_pb2,
    instagram_service_pb2_grpc,
    meta_leads_service_pb2,
    meta_leads_service_pb2_grpc,
)
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from webhooks_http.ratelimit import Network, TokenBucketLimiter, client_address, too_many
from webhooks_http.service_identity import ServiceIdentity
from webhooks_http.upstream import error_reason

_log = logging.getLogger(__name__)
# The OAuth browser binding: the auth-url response set `renove_oauth_<conexao>`; its value goes
# back to the server, which compares it with the digest sealed in the state.
BINDING_COOKIE_PREFIX = "renove_oauth_"
BINDING_COOKIE_PATH = "/api/v1/conexoes"
BINDING_METADATA = "x-oauth-browser-nonce"
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_\-]{1,128}")
# Query values are short tokens; anything longer is not a real provider redirect.
_MAX_VALUE = 4096
FRONTEND_PATH = "/configuracoes/conexoes"


@dataclass(frozen=True)
class OAuthCallback:
    conexao: str  # the connection the frontend is told about (as the server's redirects say)
    path: str
    request_class: type[Message]
    stub: Callable[[grpc.aio.Channel], Any]
    rpc: str


CALLBACKS: tuple[OAuthCallback, ...] = (
    OAuthCallback(
        "meta_lead_ads",
        "/api/v1/conexoes/meta/callback",
        meta_leads_service_pb2.HandleMetaOAuthCallbackRequest,
        meta_leads_service_pb2_grpc.MetaLeadsServiceStub,
        "HandleMetaOAuthCallback",
    ),
    OAuthCallback(
        "google_calendar",
        "/api/v1/conexoes/google/callback",
        google_calendar_service_pb2.HandleGoogleOAuthCallbackRequest,
        google_calendar_service_pb2_grpc.GoogleCalendarServiceStub,
        "HandleGoogleOAuthCallback",
    ),
    OAuthCallback(
        "email_gmail",
        "/api/v1/conexoes/email/google/callback",
        email_service_pb2.HandleGmailOAuthCallbackRequest,
        email_service_pb2_grpc.EmailServiceStub,
        "HandleGmailOAuthCallback",
    ),
    OAuthCallback(
        "instagram_direct",
        "/api/v1/conexoes/instagram/callback",
        instagram_service_pb2.HandleInstagramOAuthCallbackRequest,
        instagram_service_pb2_grpc.InstagramServiceStub,
        "HandleInstagramOAuthCallback",
    ),
)


def callback_request(request_class: type[Message], query: Any) -> Message:
    """The RPC request from the redirect's query: every string field named like a parameter
    (code, state, error, error_description, error_reason, scope, ...), first value wins.
    """
    message = request_class()
    for field in request_class.DESCRIPTOR.fields:
        if field.type != FieldDescriptor.TYPE_STRING or field.is_repeated:
            continue
        value = query.get(field.name)
        if value:
            setattr(message, field.name, value[:_MAX_VALUE])
    return message


def binding_cookie(conexao: str) -> str:
    return f"{BINDING_COOKIE_PREFIX}{conexao}"


def binding_metadata(cookies: Mapping[str, str], name: str) -> tuple[tuple[str, str], ...]:
    """The browser's binding nonce as metadata; nothing when absent or not a nonce we mint
    (the server then refuses a bound state with STATE_BROWSER_MISMATCH)."""
    value = cookies.get(name, "")
    if not _COOKIE_VALUE.fullmatch(value):
        return ()
    return ((BINDING_METADATA, value),)


def error_redirect(frontend_url: str, conexao: str, reason: str) -> str:
    """The same query the server's own failure redirects carry: conexao, status=erro, motivo."""
    query = urlencode({"conexao": conexao, "status": "erro", "motivo": reason})
    return f"{frontend_url}{FRONTEND_PATH}?{query}"


def is_frontend_url(url: str, frontend_url: str) -> bool:
    """Same scheme and host as the frontend (a relative or foreign URL is refused)."""
    target, home = urlsplit(url), urlsplit(frontend_url)
    return bool(target.scheme) and (target.scheme, target.netloc) == (home.scheme, home.netloc)


class OAuthRedirects:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        identity: ServiceIdentity,
        limiter: TokenBucketLimiter,
        *,
        frontend_url: str,
        deadline_s: float = 30.0,
        trusted_proxies: tuple[Network, ...] = (),
    ) -> None:
        self._channel = channel
        self._identity = identity
        self._limiter = limiter
        self._frontend = frontend_url.rstrip("/")
        self._deadline = deadline_s
        self._proxies = trusted_proxies

    def routes(self) -> list[Route]:
        return [Route(cb.path, self._endpoint(cb), methods=["GET"]) for cb in CALLBACKS]

    def _endpoint(self, callback: OAuthCallback) -> Callable[[Request], Any]:
        call = getattr(callback.stub(self._channel), callback.rpc)

        async def endpoint(request: Request) -> Response:
            remote = client_address(request.scope, self._proxies)
            wait = self._limiter.acquire(f"{remote[0]} {callback.path}")
            if wait is not None:
                return too_many(wait)
            message = callback_request(callback.request_class, request.query_params)
            cookie = binding_cookie(callback.conexao)
            metadata = (*self._identity.metadata(), *binding_metadata(request.cookies, cookie))
            try:
                reply = await call(message, metadata=metadata, timeout=self._deadline)
            except grpc.aio.AioRpcError as exc:
                reason = error_reason(exc)
                _log.warning("%s failed: %s (%s)", callback.rpc, exc.code().name, reason)
                target = error_redirect(self._frontend, callback.conexao, reason)
                return self._redirect(target, clear_cookie=cookie)
            target = reply.result.redirect_url
            if not is_frontend_url(target, self._frontend):
                reason = reply.result.motivo_erro or "INVALID_REDIRECT"
                if target:
                    _log.warning("%s returned a redirect outside the frontend", callback.rpc)
                target = error_redirect(self._frontend, callback.conexao, reason)
            return self._redirect(target, clear_cookie=cookie)

        return endpoint

    @staticmethod
    def _redirect(url: str, *, clear_cookie: str | None = None) -> Response:
        # 302 + no-store: the URL carries a one-time outcome, never to be cached or replayed.
        response = RedirectResponse(url, status_code=302, headers={"cache-control": "no-store"})
        if clear_cookie is not None:
            # The binding served its one callback (the state is single-use anyway).
            response.delete_cookie(clear_cookie, path=BINDING_COOKIE_PATH, httponly=True)
        return response
