"""The sandbox's Calendar API against Google's contract (shared/providers.md 8): writable
calendars, Meet only with conferenceDataVersion=1, client ids and 409, sync tokens and 410,
HTTPS-only watch, delete twice answers 410."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sandbox.app import build_sandbox_app
from sandbox.settings import SandboxSettings
from server.providers.google_oauth import GoogleOAuthClient, Pkce
from tests.unit.test_google_oauth_sandbox import _consent

BASE = "http://sandbox/google"
CAL = f"{BASE}/calendar/v3"
PRIMARY = "joao.silva@gmail.com"
EVENT = {
    "summary": "Demo",
    "start": {"dateTime": "2026-03-10T14:00:00-03:00"},
    "end": {"dateTime": "2026-03-10T14:30:00-03:00"},
    "attendees": [{"email": "lead@example.com"}],
    "conferenceData": {
        "createRequest": {"requestId": "r1", "conferenceSolutionKey": {"type": "hangoutsMeet"}}
    },
}


@pytest.fixture
async def google() -> AsyncIterator[httpx.AsyncClient]:
    app = build_sandbox_app(SandboxSettings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        pkce = Pkce.new()
        back = await _consent(http, pkce)
        tokens = await GoogleOAuthClient(http, token_url=BASE, api_url=BASE).exchange_code(
            client_id="sandbox-google-client.apps.googleusercontent.com",
            client_secret="sandbox-google-client-secret",
            code=back["code"][0],
            redirect_uri="https://crm.example/api/v1/conexoes/google/callback",
            verifier=pkce.verifier,
        )
        http.headers["authorization"] = f"Bearer {tokens.access_token}"
        yield http
    for fake in app.state.fakes.values():
        await fake.aclose()


async def _insert(http: httpx.AsyncClient, body: dict[str, Any], **params: str) -> httpx.Response:
    return await http.post(f"{CAL}/calendars/{PRIMARY}/events", params=params, json=body)


async def test_calendar_list_keeps_writable_ones(google: httpx.AsyncClient) -> None:
    answer = (
        await google.get(f"{CAL}/users/me/calendarList", params={"minAccessRole": "writer"})
    ).json()
    roles = {i["id"]: i["accessRole"] for i in answer["items"]}
    assert roles[PRIMARY] == "owner" and "reader" not in roles.values()
    assert next(i for i in answer["items"] if i.get("primary"))["id"] == PRIMARY


async def test_meet_needs_conference_data_version_1(google: httpx.AsyncClient) -> None:
    silent = (await _insert(google, EVENT, sendUpdates="all")).json()
    assert "conferenceData" not in silent and "hangoutLink" not in silent
    asked = (await _insert(google, EVENT, conferenceDataVersion="1")).json()
    assert asked["conferenceData"]["createRequest"]["status"]["statusCode"] == "pending"
    url = f"{CAL}/calendars/{PRIMARY}/events/{asked['id']}"
    await google.get(url)
    ready = (await google.get(url)).json()
    assert ready["conferenceData"]["createRequest"]["status"]["statusCode"] == "success"
    assert ready["hangoutLink"].startswith("https://meet.google.com/")


async def test_client_ids_make_inserts_idempotent(google: httpx.AsyncClient) -> None:
    first = await _insert(google, {**EVENT, "id": "abc0123456"})
    assert first.status_code == 200
    again = await _insert(google, {**EVENT, "id": "abc0123456"})
    assert again.status_code == 409
    assert again.json()["error"]["errors"][0]["reason"] == "duplicate"
    bad = await _insert(google, {**EVENT, "id": "NOT_BASE32HEX"})
    assert bad.status_code == 400


async def test_sync_tokens_list_changes_and_expire_with_410(google: httpx.AsyncClient) -> None:
    url = f"{CAL}/calendars/{PRIMARY}/events"
    full = (await google.get(url, params={"singleEvents": "true", "showDeleted": "true"})).json()
    token = full["nextSyncToken"]
    created = (await _insert(google, EVENT)).json()
    delta = (await google.get(url, params={"syncToken": token})).json()
    assert [e["id"] for e in delta["items"]] == [created["id"]]
    gone = await google.delete(f"{url}/{created['id']}")
    assert gone.status_code == 204
    assert (await google.delete(f"{url}/{created['id']}")).status_code == 410
    after = (await google.get(url, params={"syncToken": delta["nextSyncToken"]})).json()
    assert after["items"][0]["status"] == "cancelled"
    await google.post(f"{BASE}/_control/sync-tokens/invalidate")
    expired = await google.get(url, params={"syncToken": after["nextSyncToken"]})
    assert expired.status_code == 410
    assert expired.json()["error"]["errors"][0]["reason"] == "fullSyncRequired"


async def test_watch_needs_https_and_stop_ends_the_channel(google: httpx.AsyncClient) -> None:
    watch = f"{CAL}/calendars/{PRIMARY}/events/watch"
    plain = await google.post(
        watch, json={"id": "c1", "type": "web_hook", "address": "http://crm.example/hook"}
    )
    assert plain.status_code == 400
    body = {
        "id": "c2",
        "type": "web_hook",
        "address": "https://unreachable.invalid/hook",
        "token": "t",
    }
    channel = (await google.post(watch, json=body)).json()
    assert channel["kind"] == "api#channel" and channel["resourceId"] and channel["expiration"]
    stop = {"id": "c2", "resourceId": channel["resourceId"]}
    assert (await google.post(f"{CAL}/channels/stop", json=stop)).status_code == 204
    assert (await google.post(f"{CAL}/channels/stop", json=stop)).status_code == 404


async def test_a_token_without_calendar_scope_is_refused() -> None:
    app = build_sandbox_app(SandboxSettings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        answer = await http.get(
            f"{CAL}/users/me/calendarList", headers={"authorization": "Bearer nope"}
        )
        assert answer.status_code == 401
        assert answer.json()["error"]["errors"][0]["reason"] == "authError"
