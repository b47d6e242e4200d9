"""The Instagram fake against the providers contract §6 (Instagram API with Instagram Login),
driven through the server's own client (server/providers/instagram.py) over httpx's
ASGITransport, so the fake and the client are checked against each other and the contract."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sandbox.app import build_sandbox_app
from sandbox.settings import SandboxSettings
from server.providers.errors import ProviderAuthError, ProviderError, ProviderRejected
from server.providers.instagram import InstagramClient, authorize_url, is_window_error

APP_ID = "990011223344556"
SECRET = "sandbox-instagram-app-secret"
REDIRECT = "http://crm.example/api/v1/conexoes/instagram/callback"
BASE = "http://sandbox/instagram"
DAY = 24 * 3600


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = build_sandbox_app(SandboxSettings())
    fake = app.state.fakes["/instagram"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox"
    ) as client:
        client.fake = fake  # type: ignore[attr-defined]
        yield client
    await fake.aclose()


def _client(http: httpx.AsyncClient) -> InstagramClient:
    return InstagramClient(http, api_url=BASE, graph_url=BASE, version="v21.0")


async def _code(http: httpx.AsyncClient) -> str:
    url = authorize_url(BASE, app_id=APP_ID, redirect_uri=REDIRECT, state="st")
    r = await http.get(url)
    assert r.status_code == 302
    location = r.headers["location"]
    assert location.startswith(REDIRECT) and location.endswith("#_")  # as Instagram does
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["st"]
    return query["code"][0] + "#_"  # what a careless client would pass on


async def _long_token(http: httpx.AsyncClient) -> str:
    api = _client(http)
    short = await api.exchange_code(
        app_id=APP_ID, app_secret=SECRET, redirect_uri=REDIRECT, code=await _code(http)
    )
    long = await api.exchange_long_lived(app_secret=SECRET, short_token=short.access_token)
    return long.access_token


async def _control(http: httpx.AsyncClient, path: str, body: dict[str, object] | None = None):  # type: ignore[no-untyped-def]
    r = await http.post(f"{BASE}/_control/{path}", json=body or {})
    assert r.status_code == 200, r.text
    return r.json()


async def test_login_code_exchange_single_use_and_long_lived_token(
    http: httpx.AsyncClient,
) -> None:
    api = _client(http)
    code = await _code(http)
    short = await api.exchange_code(
        app_id=APP_ID, app_secret=SECRET, redirect_uri=REDIRECT, code=code
    )
    assert short.permissions == (
        "instagram_business_basic",
        "instagram_business_manage_messages",
    )
    with pytest.raises(ProviderRejected, match="used or expired"):
        await api.exchange_code(app_id=APP_ID, app_secret=SECRET, redirect_uri=REDIRECT, code=code)
    long = await api.exchange_long_lived(app_secret=SECRET, short_token=short.access_token)
    assert long.expires_in == 60 * DAY - 56
    me = await api.me(long.access_token)
    assert me.user_id == short.user_id
    assert me.app_scoped_id and me.app_scoped_id != me.user_id  # user_id != id
    assert (me.username, me.account_type) == ("renove_consultoria", "BUSINESS")


async def test_flat_token_answer_and_denied_login(http: httpx.AsyncClient) -> None:
    await _control(http, "app", {"flat_token_answer": True})
    token = await _long_token(http)
    assert token.startswith("IGAA")
    await _control(http, "dialog", {"deny": True})
    r = await http.get(authorize_url(BASE, app_id=APP_ID, redirect_uri=REDIRECT, state="s2"))
    query = parse_qs(urlsplit(r.headers["location"]).query)
    assert query["error"] == ["access_denied"] and query["error_reason"] == ["user_denied"]


async def test_refresh_only_after_24_hours_and_revoked_tokens(http: httpx.AsyncClient) -> None:
    api = _client(http)
    token = await _long_token(http)
    with pytest.raises(ProviderRejected, match="24 hours"):
        await api.refresh(token)
    await _control(http, "clock", {"advance_seconds": DAY + 60})
    fresh = await api.refresh(token)
    assert fresh.access_token != token and fresh.expires_in == 60 * DAY - 56
    await _control(http, "tokens/revoke", {})
    with pytest.raises(ProviderAuthError) as dead:
        await api.me(fresh.access_token)
    assert dead.value.provider_subcode == 460


async def test_messages_follow_the_window_and_webhooks_are_signed(
    http: httpx.AsyncClient,
) -> None:
    api = _client(http)
    token = await _long_token(http)
    me = await api.me(token)
    assert await api.subscribe(token)
    await _control(http, "app", {"webhook_url": "http://127.0.0.1:1/webhooks/instagram"})
    fake = http.fake  # type: ignore[attr-defined]
    fake.state.dispatcher.retry_delays = lambda: ()
    # Nobody wrote yet: no user to message.
    with pytest.raises(ProviderRejected):
        await api.send(token, me.user_id, recipient_id="123", text="oi")
    dm = await _control(http, "dm", {"text": "Ola", "name": "Joana"})
    delivery = dm["delivery"]
    body = delivery["body"].encode()
    payload = json.loads(body)
    assert payload["object"] == "instagram"
    entry = payload["entry"][0]
    assert entry["id"] == me.user_id  # the account's user_id, not the app-scoped id
    item = entry["messaging"][0]
    assert item["sender"]["id"] == dm["sender_id"] and item["timestamp"] > 10**12  # ms
    assert item["message"] == {"mid": dm["mid"], "text": "Ola"}
    stored = next(d for d in fake.state.dispatcher.deliveries if d.id == delivery["id"])
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert stored.headers["x-hub-signature-256"] == expected
    profile = await api.profile(token, dm["sender_id"])
    assert profile.name == "Joana"
    sent = await api.send(token, me.user_id, recipient_id=dm["sender_id"], text="Oi!")
    assert sent.recipient_id == dm["sender_id"] and sent.message_id.startswith("aWdf")
    echo = json.loads(fake.state.dispatcher.deliveries[-1].body)["entry"][0]["messaging"][0]
    assert echo["message"]["is_echo"] is True and echo["sender"]["id"] == me.user_id
    await api.send(
        token, me.user_id, recipient_id=dm["sender_id"], image_url="https://x.test/a.jpg"
    )

    # 30 hours later: only HUMAN_AGENT; after 7 days nothing.
    await _control(http, "clock", {"advance_seconds": 30 * 3600})
    with pytest.raises(ProviderError) as closed:
        await api.send(token, me.user_id, recipient_id=dm["sender_id"], text="bot")
    assert is_window_error(closed.value)
    await api.send(token, me.user_id, recipient_id=dm["sender_id"], text="eu", human_agent=True)
    assert fake.state.sent[-1]["tag"] == "HUMAN_AGENT"
    assert fake.state.sent[-1]["messaging_type"] == "MESSAGE_TAG"
    await _control(http, "clock", {"advance_seconds": 7 * DAY})
    with pytest.raises(ProviderError) as late:
        await api.send(token, me.user_id, recipient_id=dm["sender_id"], text="eu", human_agent=True)
    assert is_window_error(late.value)


async def test_other_webhook_kinds(http: httpx.AsyncClient) -> None:
    api = _client(http)
    token = await _long_token(http)
    await api.subscribe(token)
    await _control(http, "app", {"webhook_url": "http://127.0.0.1:1/webhooks/instagram"})
    http.fake.state.dispatcher.retry_delays = lambda: ()  # type: ignore[attr-defined]
    story = await _control(http, "dm", {"story_mention_url": "https://cdn.test/s.mp4?oe=6A000000"})
    message = json.loads(story["delivery"]["body"])["entry"][0]["messaging"][0]["message"]
    assert message["attachments"][0]["type"] == "story_mention"
    sender = story["sender_id"]
    read = await _control(http, "read", {"sender_id": sender, "mid": story["mid"]})
    assert json.loads(read["delivery"]["body"])["entry"][0]["messaging"][0]["read"]["mid"]
    react = await _control(http, "reaction", {"sender_id": sender, "mid": story["mid"]})
    item = json.loads(react["delivery"]["body"])["entry"][0]["messaging"][0]
    assert item["reaction"]["action"] == "react"
    app = await _control(http, "app-message", {"recipient_id": sender, "text": "do app"})
    echo = json.loads(app["delivery"]["body"])["entry"][0]["messaging"][0]
    assert echo["message"]["is_echo"] is True and echo["recipient"]["id"] == sender
    bad = await _control(http, "dm", {"sender_id": sender, "text": "x", "bad_signature": True})
    assert bad["delivery"]["body"]


async def test_customers_registered_without_a_delivery_have_profiles(
    http: httpx.AsyncClient,
) -> None:
    api = _client(http)
    token = await _long_token(http)
    with pytest.raises(ProviderRejected):  # a stranger who never wrote has no profile
        await api.profile(token, "9000000000000042")
    known = await _control(http, "customers", {"igsids": ["9000000000000042"]})
    assert known == {"igsids": ["9000000000000042"]}
    profile = await api.profile(token, "9000000000000042")
    assert profile.username.startswith("cliente_")
