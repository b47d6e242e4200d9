"""The Graph fake's Conversions API and Custom Audiences endpoints, against Meta's contract:
`/{pixel}/events` validates as Meta does (one bad event rejects the request), and the
customer-list audience endpoints answer with Meta's shapes."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sandbox.app import build_sandbox_app
from sandbox.graph.ads import AD_ACCOUNT_ID, PIXEL_ID, PIXEL_TOKEN
from sandbox.settings import SandboxSettings
from tests.unit.test_meta_user_data import KNOWN
from tests.unit.test_sandbox_graph import APP_ID, REDIRECT, SECRET

V = "/graph/v21.0"
ADS_SCOPES = "pages_show_list,ads_management"


@pytest.fixture
async def graph() -> AsyncIterator[httpx.AsyncClient]:
    app = build_sandbox_app(SandboxSettings())
    fake = app.state.fakes["/graph"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox"
    ) as client:
        yield client
    await fake.aclose()


def _event(**over: Any) -> dict[str, Any]:
    event = {
        "event_name": "Lead",
        "event_time": int(time.time()),
        "event_id": "evt-1",
        "action_source": "system_generated",
        "user_data": {"em": KNOWN["em"][1], "lead_id": "1234567890123456789"},
        "custom_data": {"event_source": "crm", "lead_event_source": "Renove CRM"},
    }
    event.update(over)
    return event


async def _send(graph: httpx.AsyncClient, data: list[Any], token: str = PIXEL_TOKEN) -> Any:
    return await graph.post(f"{V}/{PIXEL_ID}/events", json={"data": data, "access_token": token})


async def test_events_received_and_recorded(graph: httpx.AsyncClient) -> None:
    r = await _send(graph, [_event(), _event(event_id="evt-2")])
    assert r.status_code == 200
    body = r.json()
    assert body["events_received"] == 2 and body["messages"] == [] and body["fbtrace_id"]
    seen = (await graph.get(f"/graph/_control/capi/pixels/{PIXEL_ID}/events")).json()
    assert [e["event_id"] for e in seen["events"]] == ["evt-1", "evt-2"]


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ({"action_source": "crm"}, "action_source"),
        ({"user_data": {}}, "user_data is required"),
        ({"user_data": {"em": "joao@example.com"}}, "must be a SHA-256 hash"),
        ({"event_time": int(time.time()) - 8 * 24 * 3600}, "more than 7 days"),
        ({"event_time": "yesterday"}, "Unix seconds"),
    ],
)
async def test_one_bad_event_rejects_the_whole_request(
    graph: httpx.AsyncClient, bad: dict[str, Any], why: str
) -> None:
    r = await _send(graph, [_event(), _event(event_id="evt-bad", **bad)])
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == 100 and error["fbtrace_id"] and why in error["error_user_msg"]
    seen = (await graph.get(f"/graph/_control/capi/pixels/{PIXEL_ID}/events")).json()
    assert seen["events"] == []


async def test_more_than_1000_events_and_bad_tokens(graph: httpx.AsyncClient) -> None:
    r = await _send(graph, [_event(event_id=str(i)) for i in range(1001)])
    assert r.status_code == 400 and "max 1000" in r.json()["error"]["error_user_msg"]
    r = await _send(graph, [_event()], token="EAAnotthepixelstoken")
    assert r.status_code == 400 and r.json()["error"]["code"] == 190
    await graph.post("/graph/_control/capi/tokens/revoke", json={"access_token": PIXEL_TOKEN})
    r = await _send(graph, [_event()])
    error = r.json()["error"]
    assert (error["code"], error["error_subcode"]) == (190, 458)


async def test_test_events_are_kept_apart(graph: httpx.AsyncClient) -> None:
    r = await graph.post(
        f"{V}/{PIXEL_ID}/events",
        json={"data": [_event()], "access_token": PIXEL_TOKEN, "test_event_code": "TEST123"},
    )
    assert r.status_code == 200
    seen = (await graph.get(f"/graph/_control/capi/pixels/{PIXEL_ID}/events")).json()
    assert seen["events"] == [] and seen["test_events"][0]["test_event_code"] == "TEST123"


async def test_customer_list_audience_lifecycle(graph: httpx.AsyncClient) -> None:
    token = await _ads_token(graph)
    auth = {"authorization": f"Bearer {token}"}
    accounts = (await graph.get(f"{V}/me/adaccounts", headers=auth)).json()["data"]
    assert {a["id"]: a["user_tos_accepted"]["custom_audience_tos"] for a in accounts}[
        AD_ACCOUNT_ID
    ] == 1
    made = await graph.post(
        f"{V}/{AD_ACCOUNT_ID}/customaudiences",
        headers=auth,
        data={
            "name": "CRM - Leads",
            "subtype": "CUSTOM",
            "description": "d",
            "customer_file_source": "USER_PROVIDED_ONLY",
        },
    )
    audience_id = made.json()["id"]
    rows = [[KNOWN["em"][1], KNOWN["ph"][1]], ["not-a-hash", ""]]
    payload = json.dumps({"schema": ["EMAIL", "PHONE"], "data": rows})
    session = json.dumps(
        {"session_id": 7, "batch_seq": 1, "last_batch_flag": True, "estimated_num_total": 2}
    )
    added = await graph.post(
        f"{V}/{audience_id}/users", headers=auth, data={"payload": payload, "session": session}
    )
    assert added.json() == {
        "audience_id": audience_id,
        "num_received": 2,
        "num_invalid_entries": 1,
        "invalid_entry_samples": {},
        "session_id": "7",
    }
    too_many = json.dumps({"schema": "EMAIL_SHA256", "data": [KNOWN["em"][1]] * 10_001})
    r = await graph.post(f"{V}/{audience_id}/users", headers=auth, data={"payload": too_many})
    assert r.status_code == 400
    size = await graph.get(
        f"{V}/{audience_id}",
        headers=auth,
        params={"fields": "approximate_count_lower_bound,approximate_count_upper_bound"},
    )
    assert size.json()["approximate_count_lower_bound"] == -1  # too small to show
    assert (await graph.delete(f"{V}/{audience_id}", headers=auth)).json() == {"success": True}
    assert (await graph.get(f"{V}/{audience_id}", headers=auth)).status_code == 400


async def _ads_token(graph: httpx.AsyncClient) -> str:
    """A person logs in granting ads_management; the code becomes a user token."""
    r = await graph.get(
        f"{V}/dialog/oauth",
        params={"client_id": APP_ID, "redirect_uri": REDIRECT, "state": "s", "scope": ADS_SCOPES},
    )
    code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
    token = await graph.get(
        f"{V}/oauth/access_token",
        params={
            "client_id": APP_ID,
            "client_secret": SECRET,
            "redirect_uri": REDIRECT,
            "code": code,
        },
    )
    return str(token.json()["access_token"])
