"""Google OAuth 2.0 web-server flow with PKCE (Google's "Using OAuth 2.0 for Web Server
Applications", https://developers.google.com/identity/protocols/oauth2/web-server).

Shared by every Google connection (Calendar, Gmail). The client secret travels in the form
body, never in a URL; codes and tokens never reach a log line (httpx errors are described
without their URL by `translate_errors`). OAuth errors (`{"error": "invalid_grant"}`) become
`ProviderAuthError`, which the token machinery reads as "the grant is dead".
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from server.providers.errors import ProviderRejected
from server.providers.http import raise_for_provider_response, translate_errors

PROVIDER = "google_oauth"
AUTH_PATH = "/o/oauth2/v2/auth"
TOKEN_PATH = "/token"
REVOKE_PATH = "/revoke"
USERINFO_PATH = "/oauth2/v2/userinfo"
IDENTITY_SCOPES: tuple[str, ...] = ("openid", "email", "profile")
# Google answers the short identity scopes with their long names.
_ALIASES = {
    "email": "https://www.googleapis.com/auth/userinfo.email",
    "profile": "https://www.googleapis.com/auth/userinfo.profile",
}


def normalize_scope(scope: str) -> str:
    return _ALIASES.get(scope, scope)


def scope_set(scopes: Iterable[str]) -> frozenset[str]:
    return frozenset(normalize_scope(s) for s in scopes if s)


@dataclass(frozen=True)
class Pkce:
    """RFC 7636 S256: the verifier stays with us (sealed in the state), the challenge goes out."""

    verifier: str

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    @classmethod
    def new(cls) -> Pkce:
        return cls(secrets.token_urlsafe(64))  # 86 chars, within RFC 7636's 43..128


@dataclass(frozen=True)
class GoogleTokens:
    access_token: str
    expires_in: int
    scopes: tuple[str, ...]
    refresh_token: str | None = None
    # Google sends it only for refresh tokens that expire (apps in "Testing" status: 7 days).
    refresh_token_expires_in: int | None = None


@dataclass(frozen=True)
class GoogleUser:
    id: str
    email: str
    name: str


def authorization_url(
    oauth_url: str,
    *,
    client_id: str,
    redirect_uri: str,
    scopes: Iterable[str],
    state: str,
    pkce: Pkce,
    login_hint: str | None = None,
) -> str:
    """The consent screen URL: offline access (a refresh token), consent forced (a refresh
    token again on reconnect), incremental authorization, PKCE S256."""
    params = {
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": " ".join(scopes),
        "access_type": "offline",
        "prompt": "consent",
        "include_granted_scopes": "true",
        "state": state,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
    }
    if login_hint:
        params["login_hint"] = login_hint
    return f"{oauth_url.rstrip('/')}{AUTH_PATH}?{urlencode(params)}"


def _tokens(body: Mapping[str, Any]) -> GoogleTokens:
    expires = body.get("refresh_token_expires_in")
    return GoogleTokens(
        access_token=str(body["access_token"]),
        expires_in=int(body.get("expires_in") or 3600),
        scopes=tuple(str(body.get("scope") or "").split()),
        refresh_token=str(body["refresh_token"]) if body.get("refresh_token") else None,
        refresh_token_expires_in=int(expires) if expires else None,
    )


class GoogleOAuthClient:
    def __init__(self, http: httpx.AsyncClient, *, token_url: str, api_url: str) -> None:
        self._http = http
        self._token_url = token_url.rstrip("/")
        self._api_url = api_url.rstrip("/")

    async def exchange_code(
        self, *, client_id: str, client_secret: str, code: str, redirect_uri: str, verifier: str
    ) -> GoogleTokens:
        """POST /token with grant_type=authorization_code and the PKCE verifier."""
        form = {
            "code": code,
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uri": redirect_uri,
            "grant_type": "authorization_code",
            "code_verifier": verifier,
        }
        return _tokens(await self._post_form(TOKEN_PATH, form))

    async def refresh(
        self, *, client_id: str, client_secret: str, refresh_token: str
    ) -> GoogleTokens:
        """POST /token with grant_type=refresh_token (no new refresh token comes back)."""
        form = {
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
            "grant_type": "refresh_token",
        }
        return _tokens(await self._post_form(TOKEN_PATH, form))

    async def revoke(self, token: str) -> None:
        """POST /revoke: revoking the refresh token ends the whole grant. The token goes in
        the body (web-server guide, "Revoking a token")."""
        async with translate_errors(PROVIDER):
            url = f"{self._token_url}{REVOKE_PATH}"
            response = await self._http.post(url, data={"token": token})
            raise_for_provider_response(PROVIDER, response)

    async def userinfo(self, access_token: str) -> GoogleUser:
        async with translate_errors(PROVIDER):
            response = await self._http.get(
                f"{self._api_url}{USERINFO_PATH}",
                headers={"authorization": f"Bearer {access_token}"},
            )
            raise_for_provider_response(PROVIDER, response)
        body = response.json()
        return GoogleUser(
            id=str(body.get("id") or ""),
            email=str(body.get("email") or ""),
            name=str(body.get("name") or ""),
        )

    async def _post_form(self, path: str, form: Mapping[str, str]) -> Mapping[str, Any]:
        async with translate_errors(PROVIDER):
            response = await self._http.post(f"{self._token_url}{path}", data=dict(form))
            raise_for_provider_response(PROVIDER, response)
        body = response.json()
        if not isinstance(body, Mapping) or not body.get("access_token"):
            raise ProviderRejected("token response without access_token", provider=PROVIDER)
        return body
