"""MetaGraphClient against the Graph sandbox (in process) and the scripted fault server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sandbox.faults import Reply, run_fault_server
from sandbox.graph import GraphFake, build_graph_fake, seed
from server.providers.errors import (
    ProviderAuthError,
    ProviderRateLimited,
    ProviderServerError,
)
from server.providers.meta_graph import MetaGraphClient, dialog_url, parse_graph_time

APP_ID, SECRET = "1234567890123456", "sandbox-meta-app-secret"
REDIRECT = "http://crm.example/callback"


@pytest.fixture
async def fake() -> AsyncIterator[GraphFake]:
    graph = build_graph_fake()
    yield graph
    await graph.aclose()


@pytest.fixture
async def client(fake: GraphFake) -> AsyncIterator[MetaGraphClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as http:
        yield MetaGraphClient(http, "http://graph.test", "v21.0")


async def _login(fake: GraphFake, client: MetaGraphClient) -> str:
    url = dialog_url("http://graph.test", "v21.0", app_id=APP_ID, redirect_uri=REDIRECT, state="s")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as http:
        answer = await http.get(url)
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    short = await client.exchange_code(
        app_id=APP_ID, app_secret=SECRET, redirect_uri=REDIRECT, code=code
    )
    grant = await client.exchange_long_lived(
        app_id=APP_ID, app_secret=SECRET, token=short.access_token
    )
    assert grant.expires_in and grant.expires_in > short.expires_in  # type: ignore[operator]
    # The app secret, the code and the short-lived token travel in POST bodies, not URLs.
    exchanges = [r for r in fake.state.requests if r["path"].endswith("/oauth/access_token")]
    assert exchanges and all(r["method"] == "POST" and not r["query"] for r in exchanges)
    return grant.access_token


async def test_login_pages_forms_and_lead(fake: GraphFake, client: MetaGraphClient) -> None:
    token = await _login(fake, client)
    me = await client.me(token)
    assert me.id == seed.USER_ID
    fake.state.settings = fake.state.settings.__class__(page_limit=1)  # force paging.next
    pages = await client.accounts(token)
    assert [p.id for p in pages] == [seed.PAGE_ID, seed.SECOND_PAGE_ID]
    info = await client.debug_token(token, app_id=APP_ID, app_secret=SECRET)
    assert info.is_valid and info.granted("leads_retrieval", seed.PAGE_ID)
    page_token = pages[0].access_token
    fake.state.subscribed_success_as_string = True
    assert await client.subscribe_leadgen(seed.PAGE_ID, page_token) is True
    forms = await client.leadgen_forms(seed.PAGE_ID, page_token)
    assert forms[0].id == seed.FORM_ID
    assert [q.key for q in forms[0].questions][:3] == ["full_name", "email", "phone_number"]
    lead, _ = fake.state.submit_lead(seed.FORM_ID, {"email": "x@y.com"}, send_webhook=False)
    got = await client.get_lead(lead.id, page_token)
    assert got.id == lead.id and int(got.id) > 2**53
    assert got.field_data == {"email": ("x@y.com",)}
    assert got.created_time is not None
    since = parse_graph_time(lead.created_time - 10)
    assert [x.id for x in await client.form_leads(seed.FORM_ID, page_token, since=since)] == [
        lead.id
    ]
    assert all("/v21.0/" in r["path"] for r in fake.state.requests)


async def test_partially_granted_pages(fake: GraphFake, client: MetaGraphClient) -> None:
    from sandbox.graph.models import DialogPlan

    fake.state.dialog = DialogPlan(granted_page_ids=[seed.SECOND_PAGE_ID])
    token = await _login(fake, client)
    info = await client.debug_token(token, app_id=APP_ID, app_secret=SECRET)
    assert not info.granted("leads_retrieval", seed.PAGE_ID)
    assert info.granted("leads_retrieval", seed.SECOND_PAGE_ID)


async def test_big_int_ids_stay_exact_and_errors_translate() -> None:
    big = 12345678901234567891
    async with run_fault_server() as server, httpx.AsyncClient() as http:
        client = MetaGraphClient(http, server.url, "v21.0")
        path = f"/v21.0/{big}"
        server.script(
            [
                Reply.graph_error(190, subcode=463),
                Reply.graph_error(17),
                Reply.graph_error(1, status=500),
                Reply(200, f'{{"id":{big},"form_id":{big},"field_data":[]}}'.encode()),
            ],
            path=path,
        )
        with pytest.raises(ProviderAuthError) as auth:
            await client.get_lead(str(big), "t")
        assert auth.value.provider_subcode == 463
        with pytest.raises(ProviderRateLimited):
            await client.get_lead(str(big), "t")
        with pytest.raises(ProviderServerError):
            await client.get_lead(str(big), "t")
        lead = await client.get_lead(str(big), "t")
        assert lead.id == str(big) and lead.form_id == str(big)
        sent = server.requests_to(path)[0]
        assert sent.headers["authorization"] == "Bearer t" and "access_token" not in sent.query


async def test_paging_next_to_another_host_is_not_followed() -> None:
    async with run_fault_server() as server, httpx.AsyncClient() as http:
        client = MetaGraphClient(http, server.url, "v21.0")
        server.script(
            [
                Reply.json(
                    {
                        "data": [{"id": "1", "name": "P", "access_token": "pt"}],
                        "paging": {"next": "http://evil.example/v21.0/me/accounts?after=x"},
                    }
                )
            ],
            path="/v21.0/me/accounts",
        )
        pages = await client.accounts("t")
    assert [p.id for p in pages] == ["1"]


def test_graph_time_is_parsed_leniently() -> None:
    a = parse_graph_time("2015-02-28T08:49:14+0000")
    b = parse_graph_time("2015-02-28T08:49:14+00:00")
    assert a == b and a is not None and a.year == 2015
    assert parse_graph_time(1440120384) == parse_graph_time("1440120384")
