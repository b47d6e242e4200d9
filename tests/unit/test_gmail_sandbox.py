"""The Gmail client against the sandbox's Gmail fake (users.messages.send: JSON raw with
base64url and optional padding, the media upload, threads, and Google's error shapes)."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sandbox.app import build_sandbox_app
from sandbox.settings import SandboxSettings
from server.providers.errors import (
    ProviderAuthError,
    ProviderPermissionDenied,
    ProviderRateLimited,
    ProviderRejected,
)
from server.providers.gmail import UPLOAD_ABOVE_BYTES, GmailClient
from server.providers.google_oauth import GoogleOAuthClient, Pkce, authorization_url

BASE = "http://sandbox/google"
CLIENT_ID = "sandbox-google-client.apps.googleusercontent.com"
SECRET = "sandbox-google-client-secret"
REDIRECT = "https://crm.example/api/v1/conexoes/email/google/callback"
SEND = "https://www.googleapis.com/auth/gmail.send"
MESSAGE = (
    b"From: Joao <joao.silva@gmail.com>\r\nTo: cliente@exemplo.com.br\r\n"
    b"Subject: =?utf-8?q?Ol=C3=A1?=\r\nMessage-ID: <m1@gmail.com>\r\n\r\nCorpo\r\n"
)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = build_sandbox_app(SandboxSettings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        yield client
    for fake in app.state.fakes.values():
        await fake.aclose()


async def _token(http: httpx.AsyncClient, scopes: tuple[str, ...] = (SEND, "email")) -> str:
    pkce = Pkce.new()
    url = authorization_url(
        BASE, client_id=CLIENT_ID, redirect_uri=REDIRECT, scopes=scopes, state="s", pkce=pkce
    )
    page = await http.get(url)
    link = re.search(r"id='approve' href='([^']+)'", page.text)
    assert link is not None
    answer = await http.get(link.group(1))
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    tokens = await GoogleOAuthClient(http, token_url=BASE, api_url=BASE).exchange_code(
        client_id=CLIENT_ID, client_secret=SECRET, code=code, redirect_uri=REDIRECT,
        verifier=pkce.verifier,
    )  # fmt: skip
    return tokens.access_token


async def _sent(http: httpx.AsyncClient) -> list[dict[str, object]]:
    items: list[dict[str, object]] = (await http.get(f"{BASE}/_control/gmail/sent")).json()
    return items


async def test_send_raw_returns_the_message_and_thread(http: httpx.AsyncClient) -> None:
    token = await _token(http)
    sent = await GmailClient(http, BASE).send(token, MESSAGE)
    assert sent.id and sent.thread_id
    (item,) = await _sent(http)
    assert base64.urlsafe_b64decode(str(item["raw"])) == MESSAGE
    assert item["recipients"] == ["cliente@exemplo.com.br"] and not item["uploaded"]

    reply = MESSAGE.replace(b"<m1@", b"<m2@") + b""
    reply = reply.replace(b"\r\n\r\n", b"\r\nIn-Reply-To: <m1@gmail.com>\r\n\r\n", 1)
    answered = await GmailClient(http, BASE).send(token, reply, thread_id=sent.thread_id)
    assert answered.thread_id == sent.thread_id and answered.id != sent.id
    # Gmail's rule: without threadId even a reply starts a thread of its own.
    loose = await GmailClient(http, BASE).send(token, reply.replace(b"<m2@", b"<m3@"))
    assert loose.thread_id != sent.thread_id


async def test_raw_is_url_safe_base64_with_padding_optional(http: httpx.AsyncClient) -> None:
    token = await _token(http)
    body = base64.urlsafe_b64encode(MESSAGE + b"\xff\xfe").decode().rstrip("=")
    answer = await http.post(
        f"{BASE}/gmail/v1/users/me/messages/send",
        json={"raw": body},
        headers={"authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200
    assert set(answer.json()) == {"id", "threadId", "labelIds"}
    assert answer.json()["labelIds"] == ["SENT"]


async def test_large_messages_go_through_the_upload(http: httpx.AsyncClient) -> None:
    token = await _token(http)
    big = MESSAGE + b"x" * (UPLOAD_ABOVE_BYTES + 10)
    await GmailClient(http, BASE).send(token, big)
    (item,) = await _sent(http)
    assert item["uploaded"] and base64.urlsafe_b64decode(str(item["raw"])) == big


async def test_a_large_reply_keeps_its_thread_through_the_multipart_upload(
    http: httpx.AsyncClient,
) -> None:
    token = await _token(http)
    sent = await GmailClient(http, BASE).send(token, MESSAGE)
    reply = MESSAGE.replace(b"<m1@", b"<m9@").replace(
        b"\r\n\r\n", b"\r\nIn-Reply-To: <m1@gmail.com>\r\n\r\n", 1
    )
    big = reply + b"x" * (UPLOAD_ABOVE_BYTES + 10)
    answered = await GmailClient(http, BASE).send(token, big, thread_id=sent.thread_id)
    assert answered.thread_id == sent.thread_id
    item = (await _sent(http))[-1]
    assert item["uploaded"] and base64.urlsafe_b64decode(str(item["raw"])) == big


async def test_errors_use_googles_shape(http: httpx.AsyncClient) -> None:
    gmail = GmailClient(http, BASE)
    with pytest.raises(ProviderAuthError):
        await gmail.send("ya29.not-a-token", MESSAGE)
    calendar_only = await _token(http, ("https://www.googleapis.com/auth/calendar", "email"))
    with pytest.raises(ProviderPermissionDenied):
        await gmail.send(calendar_only, MESSAGE)
    token = await _token(http)
    with pytest.raises(ProviderRejected):
        await gmail.send(token, b"Subject: sem destinatario\r\n\r\nx\r\n")
    await http.post(
        f"{BASE}/_control/gmail/fail",
        json=[
            {"status": 429, "reason": "rateLimitExceeded"},
            {"status": 403, "reason": "dailyLimitExceeded"},
        ],
    )
    with pytest.raises(ProviderRateLimited) as short:
        await gmail.send(token, MESSAGE)
    with pytest.raises(ProviderRateLimited) as daily:
        await gmail.send(token, MESSAGE)
    assert short.value.retryable and daily.value.retryable
    assert (daily.value.retry_after or 0) >= 3600  # a daily limit waits hours, not seconds
    assert await _sent(http) == []
