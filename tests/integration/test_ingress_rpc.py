"""WebhookIngressService called directly, as the sidecar calls it (service token)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import grpc
import pytest
from renove.conexoes.v1 import webhook_ingress_service_pb2 as pb
from renove.conexoes.v1 import webhook_ingress_service_pb2_grpc as pb_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from server.auth.caller import Role
from server.security.cipher import SecretContext
from tests.conftest import MakeCaller, MakeTenant
from tests.integration.ingress_helpers import (
    IG_SECRET,
    VERIFY_TOKEN,
    _as_owner,
    audit_entries,
    hub_headers,
    inbox_rows,
    jobs_for,
    leadgen_body,
    seed_meta_page,
    seed_waha_session,
    set_platform_secrets,
    waha_envelope,
    waha_headers,
)
from tests.support.grpc_server import RunningServer

Outcome = pb.DeliveryOutcome


@pytest.fixture(autouse=True)
async def _secrets(server: RunningServer) -> None:
    await set_platform_secrets(server)


def _raw(path: str, body: bytes = b"", headers: dict[str, str] | None = None,
         query: list[tuple[str, str]] = (), method: str = "POST",
         remote: str = "203.0.113.7:4321") -> pb.RawHttpRequest:  # fmt: skip
    raw = pb.RawHttpRequest(
        method=method,
        path=path,
        body=body,
        remote_addr=remote,
        headers=[pb.HttpHeader(name=k, value=v) for k, v in (headers or {}).items()],
        query=[pb.QueryParameter(name=k, value=v) for k, v in query],
    )
    return raw


def _stub(server: RunningServer) -> pb_grpc.WebhookIngressServiceStub:
    return pb_grpc.WebhookIngressServiceStub(server.channel)


def _md(server: RunningServer) -> Any:
    return server.metadata(server.service_caller())


async def _waha(
    server: RunningServer,
    tenant: str,
    body: bytes,
    headers: dict[str, str],
    remote: str = "203.0.113.7:4321",
) -> Any:
    request = pb.DeliverWahaWebhookRequest(
        tenant_id=tenant, request=_raw(f"/webhooks/waha/{tenant}", body, headers, remote=remote)
    )
    return await _stub(server).DeliverWahaWebhook(request, metadata=_md(server))


async def test_valid_waha_webhook_is_stored_once_and_enqueued_once(
    server: RunningServer, owner_engine: AsyncEngine, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    session = f"s{uuid.uuid4().hex[:10]}"
    sessao = await seed_waha_session(owner_engine, tenant.id, tenant.member_id, session)
    event_id = f"evt_{uuid.uuid4().hex}"
    body = waha_envelope(session, event_id=event_id, metadata={"organizacao_id": str(tenant.id)})

    first = await _waha(server, str(tenant.id), body, waha_headers(body))
    again = await _waha(server, str(tenant.id), body, waha_headers(body))

    assert (first.response.status_code, first.outcome) == (200, Outcome.DELIVERY_OUTCOME_ACCEPTED)
    assert (again.response.status_code, again.outcome) == (200, Outcome.DELIVERY_OUTCOME_DUPLICATE)
    rows = await inbox_rows(owner_engine, "waha", event_id, tenant.id)
    assert len(rows) == 1
    assert rows[0]["organizacao_id"] == tenant.id and rows[0]["verdict"] == "accepted"
    assert bytes(rows[0]["body"]) == body  # the exact bytes, not re-serialised
    jobs = await jobs_for(owner_engine, tenant.id, f"waha:{event_id}")
    assert len(jobs) == 1
    job = jobs[0]
    assert job["operacao"] == "waha_event"
    assert job["payload"]["inbox_id"] == first.inbox_id == str(rows[0]["id"])
    assert job["payload"]["session"] == session and job["payload"]["event"] == "message"
    assert job["payload"]["sessao_id"] == str(sessao)


async def test_bad_waha_hmac_is_403_audited_and_not_stored(
    server: RunningServer, owner_engine: AsyncEngine, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    session = f"s{uuid.uuid4().hex[:10]}"
    await seed_waha_session(owner_engine, tenant.id, tenant.member_id, session)
    event_id = f"evt_{uuid.uuid4().hex}"
    body = waha_envelope(session, event_id=event_id)

    # A source of its own: refusals are audited once per source and minute.
    remote = f"[2001:db8::{uuid.uuid4().hex[:4]}]:4321"
    reply = await _waha(
        server, str(tenant.id), body, waha_headers(body, key="wrong-key"), remote=remote
    )

    assert reply.response.status_code == 403
    assert reply.outcome == Outcome.DELIVERY_OUTCOME_UNAUTHENTICATED
    assert await inbox_rows(owner_engine, "waha", event_id, tenant.id) == []
    assert await jobs_for(owner_engine, tenant.id, f"waha:{event_id}") == []
    entries = await audit_entries(owner_engine, "webhook.rejected", f"/webhooks/waha/{tenant.id}")
    assert len(entries) == 1
    details = entries[0]["details"]
    assert entries[0]["organizacao_id"] is None
    assert details["reason"] == "invalid_signature" and details["provider"] == "waha"
    assert details["remote_addr"] == remote
    assert "Olá" not in json.dumps(details) and "wrong-key" not in json.dumps(details)


async def test_missing_waha_hmac_is_401(server: RunningServer, make_tenant: MakeTenant) -> None:
    tenant = await make_tenant()
    body = waha_envelope("whatever")
    reply = await _waha(server, str(tenant.id), body, {"content-type": "application/json"})
    assert reply.response.status_code == 401


async def test_unknown_session_and_tenant_mismatch_are_403_and_audited(
    server: RunningServer, owner_engine: AsyncEngine, make_tenant: MakeTenant
) -> None:
    owner, other = await make_tenant(), await make_tenant()
    session = f"s{uuid.uuid4().hex[:10]}"
    await seed_waha_session(owner_engine, owner.id, owner.member_id, session)

    unknown = waha_envelope(f"nobody{uuid.uuid4().hex[:6]}")
    reply = await _waha(server, str(owner.id), unknown, waha_headers(unknown))
    assert reply.response.status_code == 403

    # Right session, someone else's tenant in the URL.
    wrong_url = waha_envelope(session)
    reply = await _waha(server, str(other.id), wrong_url, waha_headers(wrong_url))
    assert reply.response.status_code == 403

    # Right URL, but the session's metadata echoes another tenant.
    wrong_meta = waha_envelope(session, metadata={"tenant_id": str(other.id)})
    reply = await _waha(server, str(owner.id), wrong_meta, waha_headers(wrong_meta))
    assert reply.response.status_code == 403

    assert await audit_entries(owner_engine, "webhook.unknown_session", str(owner.id))
    assert len(await audit_entries(owner_engine, "webhook.tenant_mismatch", session)) == 2
    assert await jobs_for(owner_engine, owner.id, "waha:%") == []


async def test_unparsable_body_is_400(server: RunningServer, make_tenant: MakeTenant) -> None:
    tenant = await make_tenant()
    body = b"{not json"
    reply = await _waha(server, str(tenant.id), body, waha_headers(body))
    assert reply.response.status_code == 400
    assert reply.outcome == Outcome.DELIVERY_OUTCOME_MALFORMED


async def test_meta_handshake(server: RunningServer) -> None:
    def verify(token: str) -> pb.VerifyMetaLeadsWebhookRequest:
        query = [("hub.mode", "subscribe"), ("hub.challenge", "1158201444"),
                 ("hub.verify_token", token)]  # fmt: skip
        return pb.VerifyMetaLeadsWebhookRequest(
            request=_raw("/webhooks/meta-leads", query=query, method="GET")
        )

    stub = _stub(server)
    good = await stub.VerifyMetaLeadsWebhook(verify(VERIFY_TOKEN), metadata=_md(server))
    bad = await stub.VerifyMetaLeadsWebhook(verify("guess"), metadata=_md(server))
    assert (good.response.status_code, good.response.body) == (200, b"1158201444")
    assert good.response.content_type.startswith("text/plain")
    assert bad.response.status_code == 403


async def test_meta_leadgen_signature_dedupe_and_unknown_page(
    server: RunningServer, owner_engine: AsyncEngine, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    page = str(uuid.uuid4().int % 10**15)
    await seed_meta_page(owner_engine, tenant.id, page)
    known = str(10**17 + uuid.uuid4().int % 10**16)  # beyond 2^53, as Meta sends them
    stray = str(10**17 + uuid.uuid4().int % 10**16)
    body = leadgen_body((known, page), (stray, "999000999000"))

    def deliver(headers: dict[str, str]) -> Any:
        request = pb.DeliverMetaLeadsWebhookRequest(
            request=_raw("/webhooks/meta-leads", body, headers)
        )
        return _stub(server).DeliverMetaLeadsWebhook(request, metadata=_md(server))

    bad = await deliver(hub_headers(body, secret="not-the-app-secret"))
    assert bad.response.status_code == 403
    assert await inbox_rows(owner_engine, "meta_leadgen", known, tenant.id) == []

    good = await deliver(hub_headers(body))
    again = await deliver(hub_headers(body))
    assert good.response.status_code == again.response.status_code == 200
    assert good.outcome == Outcome.DELIVERY_OUTCOME_ACCEPTED and len(good.inbox_ids) == 1
    assert again.outcome == Outcome.DELIVERY_OUTCOME_DUPLICATE

    (row,) = await inbox_rows(owner_engine, "meta_leadgen", known, tenant.id)
    assert row["verdict"] == "accepted" and row["organizacao_id"] == tenant.id
    (job,) = await jobs_for(owner_engine, tenant.id, f"meta_leadgen:{known}")
    assert job["operacao"] == "meta_leadgen"
    assert job["payload"]["leadgen_id"] == known and job["payload"]["page_id"] == page
    assert job["payload"]["form_id"] == "12312312312"

    (stray_row,) = await inbox_rows(owner_engine, "meta_leadgen", stray)
    assert stray_row["verdict"] == "rejected" and stray_row["organizacao_id"] is None
    assert await audit_entries(owner_engine, "webhook.unknown_page", "999000999000")


async def test_instagram_message_is_stored_for_the_account_owner(
    server: RunningServer, owner_engine: AsyncEngine, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    ig_id = str(uuid.uuid4().int % 10**17)
    await _as_owner(
        owner_engine,
        tenant.id,
        "INSERT INTO conexoes_instagram (organizacao_id, usuario_id, instagram_user_id,"
        " access_token_encrypted) VALUES (:org, :user, :ig, 'sealed') RETURNING id",
        org=tenant.id,
        user=tenant.member_id,
        ig=ig_id,
    )
    mid = f"aWdfZAG1{uuid.uuid4().hex}"
    body = json.dumps({"object": "instagram", "entry": [{"id": ig_id, "time": 1, "messaging": [
        {"sender": {"id": "555"}, "recipient": {"id": ig_id}, "timestamp": 1,
         "message": {"mid": mid, "text": "oi"}}]}]}).encode()  # fmt: skip
    request = pb.DeliverInstagramWebhookRequest(
        request=_raw("/webhooks/instagram", body, hub_headers(body, secret=IG_SECRET))
    )
    reply = await _stub(server).DeliverInstagramWebhook(request, metadata=_md(server))
    assert reply.response.status_code == 200 and len(reply.inbox_ids) == 1
    (job,) = await jobs_for(owner_engine, tenant.id, f"instagram:{mid}")
    assert job["operacao"] == "instagram_event" and job["payload"]["mid"] == mid


async def test_google_channel_token_is_checked(
    server: RunningServer, owner_engine: AsyncEngine, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    channel = str(uuid.uuid4())
    context = SecretContext("conexoes_google", "channel_token_encrypted", tenant.id)
    sealed = server.deps.keyring.encrypt("channel-secret", context)
    await _as_owner(
        owner_engine,
        tenant.id,
        "INSERT INTO conexoes_google (organizacao_id, usuario_id, access_token_encrypted,"
        " channel_id, channel_token_encrypted) VALUES (:org, :user, 'sealed', :ch, :tok)"
        " RETURNING id",
        org=tenant.id,
        user=tenant.member_id,
        ch=channel,
        tok=sealed,
    )

    async def notify(token: str | None, channel_id: str = channel, number: str = "7") -> Any:
        headers = {"x-goog-channel-id": channel_id, "x-goog-message-number": number,
                   "x-goog-resource-state": "exists"}  # fmt: skip
        if token is not None:
            headers["x-goog-channel-token"] = token
        request = pb.DeliverGoogleCalendarWebhookRequest(
            request=_raw("/webhooks/google-calendar", b"", headers)
        )
        return await _stub(server).DeliverGoogleCalendarWebhook(request, metadata=_md(server))

    assert (await notify(None)).response.status_code == 401
    assert (await notify("forged")).response.status_code == 403
    # An unknown channel is answered like a wrong token: no oracle for which ids exist.
    unknown = await notify("channel-secret", channel_id=str(uuid.uuid4()))
    wrong = await notify("forged")
    assert (unknown.response.status_code, unknown.response.body) == (
        wrong.response.status_code,
        wrong.response.body,
    )
    ok = await notify("channel-secret")
    assert ok.response.status_code == 200 and ok.outcome == Outcome.DELIVERY_OUTCOME_ACCEPTED
    (job,) = await jobs_for(owner_engine, tenant.id, f"google_calendar:{channel}:7")
    assert job["operacao"] == "google_calendar_notification"
    assert job["payload"]["resource_state"] == "exists"
    (row,) = await inbox_rows(owner_engine, "google_calendar", f"{channel}:7", tenant.id)
    assert "x-goog-channel-token" not in row["headers"]


async def test_only_the_service_identity_may_deliver(
    server: RunningServer, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant()
    admin = make_caller(tenant, role=Role.ADMIN)
    request = pb.DeliverWahaWebhookRequest(tenant_id=str(tenant.id), request=_raw("/x"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _stub(server).DeliverWahaWebhook(request, metadata=server.metadata(admin))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
