"""The Graph fake against docs/providers.md (Meta Graph, Meta Lead Ads).

API calls go through httpx's ASGITransport into the whole sandbox app (the `/graph` mount is
exercised too); webhooks go over real loopback HTTP to the scripted fault server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sandbox.app import build_sandbox_app
from sandbox.faults import Reply, run_fault_server
from sandbox.graph import seed
from sandbox.settings import SandboxSettings

V = "/graph/v21.0"
SECRET = "sandbox-meta-app-secret"
APP_ID = "1234567890123456"
REDIRECT = "http://crm.example/api/v1/conexoes/meta/callback"
SCOPES = (
    "pages_show_list,pages_read_engagement,pages_manage_metadata,pages_manage_ads,leads_retrieval"
)


@pytest.fixture
async def graph() -> AsyncIterator[httpx.AsyncClient]:
    app = build_sandbox_app(SandboxSettings())
    fake = app.state.fakes["/graph"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox"
    ) as client:
        client.fake = fake  # type: ignore[attr-defined]
        yield client
    await fake.aclose()


async def _login(client: httpx.AsyncClient, **plan: object) -> dict[str, str]:
    if plan:
        await client.post("/graph/_control/dialog", json=plan)
    r = await client.get(
        f"{V}/dialog/oauth",
        params={"client_id": APP_ID, "redirect_uri": REDIRECT, "state": "st", "scope": SCOPES},
    )
    assert r.status_code == 302
    return {k: v[0] for k, v in parse_qs(urlsplit(r.headers["location"]).query).items()}


async def _user_token(client: httpx.AsyncClient, **plan: object) -> str:
    code = (await _login(client, **plan))["code"]
    short = await client.get(
        f"{V}/oauth/access_token",
        params={
            "client_id": APP_ID,
            "client_secret": SECRET,
            "redirect_uri": REDIRECT,
            "code": code,
        },
    )
    assert short.status_code == 200, short.text
    long = await client.get(
        f"{V}/oauth/access_token",
        params={
            "grant_type": "fb_exchange_token",
            "client_id": APP_ID,
            "client_secret": SECRET,
            "fb_exchange_token": short.json()["access_token"],
        },
    )
    body = long.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 50 * 24 * 3600
    return str(body["access_token"])


async def _page_token(client: httpx.AsyncClient, user_token: str, page_id: str) -> str:
    r = await client.get(f"{V}/me/accounts", params={"access_token": user_token})
    return next(p["access_token"] for p in r.json()["data"] if p["id"] == page_id)


async def test_dialog_approves_with_a_single_use_code(graph: httpx.AsyncClient) -> None:
    query = await _login(graph)
    assert query["state"] == "st" and query["code"]
    params = {
        "client_id": APP_ID,
        "client_secret": SECRET,
        "redirect_uri": REDIRECT,
        "code": query["code"],
    }
    first = await graph.get(f"{V}/oauth/access_token", params=params)
    assert first.status_code == 200
    again = await graph.get(f"{V}/oauth/access_token", params=params)
    assert again.status_code == 400
    assert again.json()["error"]["code"] == 100
    assert again.json()["error"]["error_subcode"] == 36009


async def test_dialog_denies_on_request(graph: httpx.AsyncClient) -> None:
    query = await _login(graph, deny=True)
    assert query == {
        "error": "access_denied",
        "error_code": "200",
        "error_description": "Permissions error",
        "error_reason": "user_denied",
        "state": "st",
    }


async def test_code_exchange_checks_redirect_and_secret(graph: httpx.AsyncClient) -> None:
    code = (await _login(graph))["code"]
    base = {"client_id": APP_ID, "code": code}
    mismatch = await graph.get(
        f"{V}/oauth/access_token",
        params={**base, "client_secret": SECRET, "redirect_uri": REDIRECT + "/"},
    )
    assert mismatch.json()["error"]["error_subcode"] == 36008
    wrong = await graph.get(
        f"{V}/oauth/access_token",
        params={**base, "client_secret": "nope", "redirect_uri": REDIRECT},
    )
    assert wrong.status_code == 400 and wrong.json()["error"]["type"] == "OAuthException"


async def test_me_accounts_pages_with_tokens_and_paging(graph: httpx.AsyncClient) -> None:
    token = await _user_token(graph)
    me = (await graph.get(f"{V}/me", params={"access_token": token})).json()
    assert me == {"id": seed.USER_ID, "name": "Renove Marketing"}
    first = (await graph.get(f"{V}/me/accounts", params={"access_token": token, "limit": 1})).json()
    assert [p["id"] for p in first["data"]] == [seed.PAGE_ID]
    assert first["data"][0]["access_token"] and "MANAGE" in first["data"][0]["tasks"]
    second = (await graph.get(first["paging"]["next"].replace("http://sandbox", ""))).json()
    assert [p["id"] for p in second["data"]] == [seed.SECOND_PAGE_ID]
    assert "next" not in second["paging"]


async def test_debug_token_tells_granted_pages(graph: httpx.AsyncClient) -> None:
    token = await _user_token(graph, granted_page_ids=[seed.PAGE_ID])
    r = await graph.get(
        f"{V}/debug_token",
        params={"input_token": token, "access_token": f"{APP_ID}|{SECRET}"},
    )
    data = r.json()["data"]
    assert data["is_valid"] is True and data["type"] == "USER"
    assert data["app_id"] == APP_ID and data["user_id"] == seed.USER_ID
    leads = next(s for s in data["granular_scopes"] if s["scope"] == "leads_retrieval")
    assert leads["target_ids"] == [seed.PAGE_ID]
    # The page not granted lists, but its forms cannot be read.
    other = await _page_token(graph, token, seed.SECOND_PAGE_ID)
    denied = await graph.get(
        f"{V}/{seed.SECOND_PAGE_ID}/leadgen_forms", params={"access_token": other}
    )
    assert denied.json()["error"]["code"] == 200


async def test_forms_subscription_and_lead_read(graph: httpx.AsyncClient) -> None:
    token = await _user_token(graph)
    page_token = await _page_token(graph, token, seed.PAGE_ID)
    forms = (
        await graph.get(
            f"{V}/{seed.PAGE_ID}/leadgen_forms",
            params={"access_token": page_token, "fields": "id,name,status,questions"},
        )
    ).json()["data"]
    main = next(f for f in forms if f["id"] == seed.FORM_ID)
    assert main["status"] == "ACTIVE"
    assert {"key": "email", "label": "E-mail", "type": "EMAIL"}.items() <= main["questions"][
        1
    ].items()
    assert {f["status"] for f in forms} == {"ACTIVE", "ARCHIVED"}

    sub = await graph.post(
        f"{V}/{seed.PAGE_ID}/subscribed_apps",
        params={"subscribed_fields": "leadgen", "access_token": page_token},
    )
    assert sub.json() == {"success": True}
    await graph.post("/graph/_control/app", json={"subscribed_apps_success_as_string": True})
    sub = await graph.post(
        f"{V}/{seed.PAGE_ID}/subscribed_apps",
        data={"subscribed_fields": "leadgen", "access_token": page_token},
    )
    assert sub.json() == {"success": "true"}
    apps = (
        await graph.get(f"{V}/{seed.PAGE_ID}/subscribed_apps", params={"access_token": page_token})
    ).json()["data"]
    assert apps[0]["subscribed_fields"] == ["leadgen"]

    made = (
        await graph.post(
            "/graph/_control/leads",
            json={"form_id": seed.FORM_ID, "answers": {"email": "a@b.com"}, "send_webhook": False},
        )
    ).json()
    assert int(made["leadgen_id"]) > 2**53
    lead = (
        await graph.get(
            f"{V}/{made['leadgen_id']}",
            params={"access_token": page_token, "fields": "id,created_time,form_id,field_data"},
        )
    ).json()
    assert lead["id"] == made["leadgen_id"] and lead["form_id"] == seed.FORM_ID
    assert lead["field_data"] == [{"name": "email", "values": ["a@b.com"]}]
    assert lead["created_time"].endswith("+0000")

    since = made["created_time"] - 1
    listed = (
        await graph.get(
            f"{V}/{seed.FORM_ID}/leads",
            params={
                "access_token": page_token,
                "filtering": json.dumps(
                    [{"field": "time_created", "operator": "GREATER_THAN", "value": since}]
                ),
            },
        )
    ).json()["data"]
    assert [x["id"] for x in listed] == [made["leadgen_id"]]


async def test_expired_and_revoked_tokens_answer_190(graph: httpx.AsyncClient) -> None:
    token = await _user_token(graph)
    page_token = await _page_token(graph, token, seed.PAGE_ID)
    await graph.post("/graph/_control/tokens/expire", json={})
    r = await graph.get(f"{V}/{seed.PAGE_ID}/leadgen_forms", params={"access_token": page_token})
    assert r.status_code == 400
    assert (r.json()["error"]["code"], r.json()["error"]["error_subcode"]) == (190, 463)
    token = await _user_token(graph)  # reconnecting gives working tokens again
    assert (await graph.get(f"{V}/me", params={"access_token": token})).status_code == 200
    await graph.post("/graph/_control/revoke", json={})
    r = await graph.get(f"{V}/me", params={"access_token": token})
    assert r.json()["error"]["error_subcode"] == 458
    debug = await graph.get(
        f"{V}/debug_token", params={"input_token": token, "access_token": f"{APP_ID}|{SECRET}"}
    )
    assert debug.json()["data"]["is_valid"] is False
    missing = await graph.get(f"{V}/me")
    assert missing.json()["error"]["code"] == 104


async def test_faults_rate_limit_then_server_error(graph: httpx.AsyncClient) -> None:
    token = await _user_token(graph)
    await graph.post(
        "/graph/_control/faults", json={"pattern": "/me$", "kind": "rate_limit", "code": 17}
    )
    await graph.post("/graph/_control/faults", json={"pattern": "/me$", "kind": "server_error"})
    limited = await graph.get(f"{V}/me", params={"access_token": token})
    assert limited.status_code == 400 and limited.json()["error"]["code"] == 17
    assert "x-app-usage" in limited.headers
    broken = await graph.get(f"{V}/me", params={"access_token": token})
    assert broken.status_code == 500 and broken.json()["error"]["is_transient"] is True
    ok = await graph.get(f"{V}/me", params={"access_token": token})
    assert ok.status_code == 200
    log = (await graph.get("/graph/_control/requests")).json()
    assert all(e["query"].get("access_token") in (None, "[redacted]") for e in log)


async def test_removing_the_app_kills_every_token_of_the_person(
    graph: httpx.AsyncClient,
) -> None:
    token = await _user_token(graph)
    removed = await graph.delete(f"{V}/me/permissions", params={"access_token": token})
    assert removed.status_code == 200 and removed.json() == {"success": True}
    dead = await graph.get(f"{V}/me", params={"access_token": token})
    assert dead.json()["error"]["code"] == 190
    assert dead.json()["error"]["error_subcode"] == 458
    world = (await graph.get("/graph/_control/world")).json()
    assert world["revoked_apps"] == [seed.USER_ID]


async def test_latency_slows_every_graph_call(
    graph: httpx.AsyncClient,
) -> None:
    token = await _user_token(graph)
    bad = await graph.post("/graph/_control/latency", json={"seconds": -1})
    assert bad.status_code == 400
    await graph.post("/graph/_control/latency", json={"seconds": 0.2})
    slow = await graph.get(f"{V}/me", params={"access_token": token})
    assert slow.status_code == 200 and slow.elapsed.total_seconds() >= 0.2
    off = await graph.post("/graph/_control/latency", json={"seconds": 0})
    assert off.json() == {"seconds": 0.0}


async def test_leadgen_webhook_is_signed_with_big_int_ids(graph: httpx.AsyncClient) -> None:
    async with run_fault_server() as receiver:
        receiver.script([Reply.error(500), Reply.json({})], path="/webhooks/meta-leads")
        url = f"{receiver.url}/webhooks/meta-leads"
        await graph.post("/graph/_control/app", json={"webhook_url": url})
        token = await _user_token(graph)
        page_token = await _page_token(graph, token, seed.PAGE_ID)
        await graph.post(
            f"{V}/{seed.PAGE_ID}/subscribed_apps",
            params={"subscribed_fields": "leadgen", "access_token": page_token},
        )
        dispatcher = graph.fake.state.dispatcher  # type: ignore[attr-defined]
        dispatcher._retry_delays = lambda: (0.01,)
        made = (
            await graph.post(
                "/graph/_control/leads",
                json={"form_id": seed.FORM_ID, "answers": {"full_name": "Jo\u00e3o"}},
            )
        ).json()
        deliveries = (await graph.post("/graph/_control/webhooks/drain")).json()
        hooks = receiver.requests_to("/webhooks/meta-leads")
    assert [a["status"] for a in deliveries[0]["attempts"]] == [500, 200]
    raw = hooks[-1].body
    expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert hooks[-1].headers["x-hub-signature-256"] == expected
    assert f'"leadgen_id":{made["leadgen_id"]}'.encode() in raw  # a JSON number, not a string
    change = json.loads(raw)["entry"][0]["changes"][0]
    assert change["field"] == "leadgen"
    assert str(change["value"]["page_id"]) == seed.PAGE_ID
    assert str(change["value"]["leadgen_id"]) == made["leadgen_id"]


async def test_bad_signature_and_unsubscribed_pages(graph: httpx.AsyncClient) -> None:
    async with run_fault_server() as receiver:
        receiver.script([Reply.json({})], path="/hook")
        await graph.post("/graph/_control/app", json={"webhook_url": f"{receiver.url}/hook"})
        silent = (
            await graph.post("/graph/_control/leads", json={"form_id": seed.FORM_ID, "answers": {}})
        ).json()
        assert silent["delivery_id"] is None  # page not subscribed: no webhook
        graph.fake.state.pages[seed.PAGE_ID].subscriptions[APP_ID] = ["leadgen"]  # type: ignore[attr-defined]
        bad = await graph.post(
            f"/graph/_control/leads/{silent['leadgen_id']}/webhook", json={"bad_signature": True}
        )
        assert bad.json()["delivery_id"] is not None
        await graph.post("/graph/_control/webhooks/drain")
        raw = receiver.requests_to("/hook")[0]
    good = "sha256=" + hmac.new(SECRET.encode(), raw.body, hashlib.sha256).hexdigest()
    assert raw.headers["x-hub-signature-256"] != good
