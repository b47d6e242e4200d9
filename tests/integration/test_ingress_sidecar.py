"""The real sidecar (uvicorn on a free port) in front of the test server: what a provider sees."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import grpc
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import MakeTenant
from tests.integration.ingress_helpers import (
    META_SECRET,
    VERIFY_TOKEN,
    audit_entries,
    hub_headers,
    inbox_rows,
    jobs_for,
    leadgen_body,
    running_sidecar,
    seed_meta_page,
    seed_waha_session,
    set_platform_secrets,
    sidecar_settings,
    waha_envelope,
    waha_headers,
)
from tests.support.grpc_server import RunningServer
from webhooks_http.app import SidecarOptions, build_sidecar_app
from webhooks_http.ratelimit import RateLimitOptions
from webhooks_http.runner import serve_in_background


@pytest.fixture(autouse=True)
async def _secrets(server: RunningServer) -> None:
    await set_platform_secrets(server)


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with running_sidecar(server) as sidecar, httpx.AsyncClient(base_url=sidecar.url) as c:
        yield c


@pytest.fixture
async def dead_server_http() -> AsyncIterator[httpx.AsyncClient]:
    """A sidecar whose gRPC server is gone (nothing listens on the port)."""
    channel = grpc.aio.insecure_channel("127.0.0.1:9")
    app = build_sidecar_app(sidecar_settings(max_webhook_bytes=1024), channel,
                            options=SidecarOptions(mount_gateway=False))  # fmt: skip
    try:
        async with (
            serve_in_background(app) as sidecar,
            httpx.AsyncClient(base_url=sidecar.url) as client,
        ):
            yield client
    finally:
        await channel.close()


async def test_waha_webhook_through_the_sidecar_is_stored_once(
    http: httpx.AsyncClient, owner_engine: AsyncEngine, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    session = f"s{uuid.uuid4().hex[:10]}"
    await seed_waha_session(owner_engine, tenant.id, tenant.member_id, session)
    event_id = f"evt_{uuid.uuid4().hex}"
    body = waha_envelope(session, event_id=event_id)
    url = f"/webhooks/waha/{tenant.id}"

    first = await http.post(url, content=body, headers=waha_headers(body))
    retry = await http.post(url, content=body, headers=waha_headers(body))

    assert first.status_code == retry.status_code == 200
    assert first.json()["status"] == "accepted" and retry.json()["status"] == "duplicate"
    (row,) = await inbox_rows(owner_engine, "waha", event_id, tenant.id)
    assert bytes(row["body"]) == body
    assert row["headers"]["x-webhook-hmac-algorithm"] == "sha512"
    assert len(await jobs_for(owner_engine, tenant.id, f"waha:{event_id}")) == 1


async def test_waha_signature_failures_through_the_sidecar(
    http: httpx.AsyncClient, owner_engine: AsyncEngine, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    session = f"s{uuid.uuid4().hex[:10]}"
    await seed_waha_session(owner_engine, tenant.id, tenant.member_id, session)
    event_id = f"evt_{uuid.uuid4().hex}"
    body = waha_envelope(session, event_id=event_id)
    url = f"/webhooks/waha/{tenant.id}"

    tampered = body.replace(b"message", b"messagE", 1)
    bad = await http.post(url, content=tampered, headers=waha_headers(body))
    missing = await http.post(url, content=body, headers={"content-type": "application/json"})
    wrong_tenant = await http.post(
        f"/webhooks/waha/{uuid.uuid4()}", content=body, headers=waha_headers(body)
    )

    assert (bad.status_code, missing.status_code, wrong_tenant.status_code) == (403, 401, 403)
    assert await inbox_rows(owner_engine, "waha", event_id, tenant.id) == []


async def test_oversize_body_is_413_at_the_sidecar(
    http: httpx.AsyncClient,
    dead_server_http: httpx.AsyncClient,
    owner_engine: AsyncEngine,
    make_tenant: MakeTenant,
) -> None:
    tenant = await make_tenant()
    url = f"/webhooks/waha/{tenant.id}"
    huge = b"{" + b" " * (1_048_576 + 10) + b"}"
    declared = await http.post(url, content=huge, headers=waha_headers(huge))
    assert declared.status_code == 413
    assert await audit_entries(owner_engine, "webhook.rejected", url) == []

    # The server is unreachable here: a 413 (not a 503) proves nothing was forwarded, for a
    # declared length and for a chunked body that declares none.
    small_limit = b"x" * 2048
    assert (await dead_server_http.post(url, content=small_limit)).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"y" * 512

    chunked = await dead_server_http.post(url, content=chunks())
    assert chunked.status_code == 413


async def test_unreachable_server_is_503_with_retry_after(
    dead_server_http: httpx.AsyncClient,
) -> None:
    body = waha_envelope("any")
    reply = await dead_server_http.post(
        f"/webhooks/waha/{uuid.uuid4()}", content=body, headers=waha_headers(body)
    )
    assert reply.status_code == 503
    assert int(reply.headers["retry-after"]) >= 1
    assert (await dead_server_http.get("/healthz")).status_code == 200
    assert (await dead_server_http.get("/readyz")).status_code == 503


async def test_meta_handshake_through_the_sidecar(http: httpx.AsyncClient) -> None:
    good = await http.get(
        "/webhooks/meta-leads",
        params={"hub.mode": "subscribe", "hub.challenge": "1158201444",
                "hub.verify_token": VERIFY_TOKEN},
    )  # fmt: skip
    bad = await http.get(
        "/webhooks/instagram",
        params={"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "nope"},
    )
    # A repeated key is kept in order; the first value is the one judged.
    repeated = await http.get(
        "/webhooks/meta-leads?hub.mode=subscribe&hub.challenge=42"
        f"&hub.verify_token=nope&hub.verify_token={VERIFY_TOKEN}"
    )
    assert (good.status_code, good.text) == (200, "1158201444")
    assert good.headers["content-type"].startswith("text/plain")
    assert bad.status_code == 403 and repeated.status_code == 403


async def test_meta_leadgen_through_the_sidecar(
    http: httpx.AsyncClient, owner_engine: AsyncEngine, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    page = str(uuid.uuid4().int % 10**15)
    await seed_meta_page(owner_engine, tenant.id, page)
    leadgen = str(10**17 + uuid.uuid4().int % 10**16)
    body = leadgen_body((leadgen, page))

    forged = await http.post(
        "/webhooks/meta-leads", content=body, headers=hub_headers(body, secret="x" + META_SECRET)
    )
    unsigned = await http.post("/webhooks/meta-leads", content=body)
    good = await http.post("/webhooks/meta-leads", content=body, headers=hub_headers(body))

    assert (forged.status_code, unsigned.status_code, good.status_code) == (403, 401, 200)
    assert len(await inbox_rows(owner_engine, "meta_leadgen", leadgen, tenant.id)) == 1
    assert len(await jobs_for(owner_engine, tenant.id, f"meta_leadgen:{leadgen}")) == 1


async def test_rate_limit_per_source_is_429(server: RunningServer) -> None:
    async with (
        running_sidecar(server, rate=0.01, burst=2) as sidecar,
        httpx.AsyncClient(base_url=sidecar.url) as client,
    ):
        url = f"/webhooks/waha/{uuid.uuid4()}"
        statuses = [(await client.post(url, content=b"{}")).status_code for _ in range(3)]
        limited = await client.post(url, content=b"{}")
        # Another route is another bucket.
        other = await client.get("/webhooks/meta-leads")
    assert statuses[:2] == [401, 401] and statuses[2] == 429
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert other.status_code == 403


async def test_spoofed_forwarded_for_does_not_escape_the_limit(server: RunningServer) -> None:
    options = SidecarOptions(rate_limit=RateLimitOptions(rate_per_second=0.01, burst=1))
    app = build_sidecar_app(sidecar_settings(), server.channel, options=options)
    async with (
        serve_in_background(app) as sidecar,
        httpx.AsyncClient(base_url=sidecar.url) as client,
    ):
        spoofed = [{"x-forwarded-for": f"10.0.0.{i}"} for i in range(2)]
        replies = [await client.get("/webhooks/instagram", headers=h) for h in spoofed]
    assert [r.status_code for r in replies] == [403, 429]


async def test_oauth_callback_redirects_to_the_frontend(http: httpx.AsyncClient) -> None:
    reply = await http.get(
        "/api/v1/conexoes/meta/callback", params={"code": "abc", "state": "not-a-state"}
    )
    assert reply.status_code == 302
    target = urlsplit(reply.headers["location"])
    home = urlsplit(sidecar_settings().frontend_url)
    assert (target.scheme, target.netloc, target.path) == (
        home.scheme,
        home.netloc,
        "/configuracoes/conexoes",
    )
    query = parse_qs(target.query)
    assert query["conexao"] == ["meta_lead_ads"] and query["status"] == ["erro"]
    assert query["motivo"][0]


async def test_health_and_gateway_fallthrough(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["grpc"] == "SERVING"
    assert (await http.get("/api/openapi.json")).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b'{"object":"page","entry":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        b'{"object":"page","entry":[{"id":"1\\u0000","changes":[{"field":"leadgen","value":'
        b'{"leadgen_id":"2\\u0000","page_id":"1\\u0000"}}]}]}',
        b'{"object":"page","entry":[{"id":"1","changes":[],"note":"a\\u0000b"}]}',
    ],
    ids=["nested-10000-deep", "nul-in-ids", "nul-in-a-value"],
)
async def test_signed_poison_bodies_are_400_not_503(
    http: httpx.AsyncClient, owner_engine: AsyncEngine, make_tenant: MakeTenant, body: bytes
) -> None:
    # A 503 would make Meta retry a message that can never be stored, for days.
    reply = await http.post("/webhooks/meta-leads", content=body, headers=hub_headers(body))
    assert reply.status_code == 400, reply.text

    tenant = await make_tenant()
    session = f"s{uuid.uuid4().hex[:10]}"
    await seed_waha_session(owner_engine, tenant.id, tenant.member_id, session)
    envelope = waha_envelope(session, event_id="evt\u0000x")
    nested: object = "x"
    for _ in range(40):
        nested = [nested]
    deep = waha_envelope(session, payload=nested)
    for poison in (envelope, deep):
        answer = await http.post(
            f"/webhooks/waha/{tenant.id}", content=poison, headers=waha_headers(poison)
        )
        assert answer.status_code == 400, answer.text


async def _rejections(engine: AsyncEngine) -> tuple[int, int]:
    """Counted refusals from loopback (every source of this module), and audit rows."""
    async with engine.begin() as conn:
        counted = await conn.scalar(
            text(
                "SELECT coalesce(sum(sem_assinatura + assinatura_invalida), 0)"
                " FROM webhook_rejeicoes WHERE origem = '127.0.0.1'"
            )
        )
        await conn.execute(text("SELECT set_config('app.current_role', 'super_admin', true)"))
        audited = await conn.scalar(
            text("SELECT count(*) FROM audit_log WHERE action = 'webhook.rejected'")
        )
    return int(counted or 0), int(audited or 0)


async def test_a_flood_of_unsigned_webhooks_is_counted_not_audited_one_by_one(
    http: httpx.AsyncClient, owner_engine: AsyncEngine
) -> None:
    counted_before, audited_before = await _rejections(owner_engine)
    body = waha_envelope("nobody")
    for n in range(300):
        url = f"/webhooks/waha/{uuid.uuid4()}" if n % 2 else "/webhooks/meta-leads"
        headers = waha_headers(body, key="forged") if n % 3 == 0 else {}
        reply = await http.post(url, content=body, headers=headers)
        assert reply.status_code in (401, 403)
    counted, audited = await _rejections(owner_engine)
    assert counted - counted_before == 300
    # One entry per source and minute: at most two when the flood straddles a minute.
    assert audited - audited_before <= 2
