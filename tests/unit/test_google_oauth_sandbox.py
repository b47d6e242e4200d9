"""The Google OAuth client against the sandbox's Google fake (shared/providers.md 7): the
consent URL, PKCE, single-use codes, refresh, revoke and invalid_grant."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sandbox.app import build_sandbox_app
from sandbox.settings import SandboxSettings
from server.providers.errors import ProviderAuthError, ProviderRejected
from server.providers.google_oauth import (
    GoogleOAuthClient,
    Pkce,
    authorization_url,
    scope_set,
)

BASE = "http://sandbox/google"
CLIENT_ID = "sandbox-google-client.apps.googleusercontent.com"
SECRET = "sandbox-google-client-secret"
REDIRECT = "https://crm.example/api/v1/conexoes/google/callback"
SCOPES = (
    "https://www.googleapis.com/auth/calendar",
    "https://www.googleapis.com/auth/calendar.events",
    "openid",
    "email",
    "profile",
)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = build_sandbox_app(SandboxSettings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        yield client
    for fake in app.state.fakes.values():
        await fake.aclose()


def _client(http: httpx.AsyncClient) -> GoogleOAuthClient:
    return GoogleOAuthClient(http, token_url=BASE, api_url=BASE)


async def _consent(
    http: httpx.AsyncClient, pkce: Pkce, decision: str = "approve", scope: str = ""
) -> dict[str, list[str]]:
    url = authorization_url(
        BASE, client_id=CLIENT_ID, redirect_uri=REDIRECT, scopes=SCOPES, state="st", pkce=pkce
    )
    query = parse_qs(urlsplit(url).query)
    assert query["access_type"] == ["offline"] and query["prompt"] == ["consent"]
    assert query["include_granted_scopes"] == ["true"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"] == [pkce.challenge] and pkce.verifier not in url
    page = await http.get(url)
    assert page.status_code == 200
    link = re.search(rf"id='{decision}' href='([^']+)'", page.text)
    assert link is not None
    answer = await http.get(link.group(1) + (f"&scope={scope}" if scope else ""))
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(REDIRECT)
    return parse_qs(urlsplit(location).query)


async def test_code_exchange_with_pkce_refresh_and_revoke(http: httpx.AsyncClient) -> None:
    pkce = Pkce.new()
    back = await _consent(http, pkce)
    assert back["state"] == ["st"]
    google = _client(http)
    tokens = await google.exchange_code(
        client_id=CLIENT_ID,
        client_secret=SECRET,
        code=back["code"][0],
        redirect_uri=REDIRECT,
        verifier=pkce.verifier,
    )
    assert tokens.refresh_token and tokens.expires_in == 3599
    assert scope_set(SCOPES) <= scope_set(tokens.scopes)
    user = await google.userinfo(tokens.access_token)
    assert user.email == "joao.silva@gmail.com" and user.id
    with pytest.raises(ProviderAuthError):  # codes are single-use
        await google.exchange_code(
            client_id=CLIENT_ID,
            client_secret=SECRET,
            code=back["code"][0],
            redirect_uri=REDIRECT,
            verifier=pkce.verifier,
        )
    fresh = await google.refresh(
        client_id=CLIENT_ID, client_secret=SECRET, refresh_token=tokens.refresh_token
    )
    assert fresh.access_token != tokens.access_token and fresh.refresh_token is None
    await google.revoke(tokens.refresh_token)
    with pytest.raises(ProviderAuthError) as dead:
        await google.refresh(
            client_id=CLIENT_ID, client_secret=SECRET, refresh_token=tokens.refresh_token
        )
    assert dead.value.provider_code == "invalid_grant"
    with pytest.raises(ProviderRejected):  # revoking twice: Google answers 400
        await google.revoke(tokens.refresh_token)


async def test_a_wrong_verifier_is_refused(http: httpx.AsyncClient) -> None:
    back = await _consent(http, Pkce.new())
    with pytest.raises(ProviderAuthError) as refused:
        await _client(http).exchange_code(
            client_id=CLIENT_ID,
            client_secret=SECRET,
            code=back["code"][0],
            redirect_uri=REDIRECT,
            verifier=Pkce.new().verifier,
        )
    assert refused.value.provider_code == "invalid_grant"


async def test_denied_and_narrowed_consent(http: httpx.AsyncClient) -> None:
    denied = await _consent(http, Pkce.new(), "deny")
    assert denied["error"] == ["access_denied"] and "code" not in denied
    narrowed = await _consent(
        http, Pkce.new(), scope="https://www.googleapis.com/auth/calendar.events openid"
    )
    granted = narrowed["scope"][0].split()
    assert "https://www.googleapis.com/auth/calendar" not in granted
    assert "https://www.googleapis.com/auth/calendar.events" in granted


async def test_a_wrong_client_secret_is_invalid_client(http: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderAuthError) as refused:
        await _client(http).refresh(client_id=CLIENT_ID, client_secret="x", refresh_token="r")
    assert refused.value.provider_code == "invalid_client"
