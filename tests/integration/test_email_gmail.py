"""Gmail end to end: consent through the Google sandbox and the sidecar's callback (bound to
the browser), the grant stored encrypted, sending through users.messages.send (JSON raw and
the media upload) with a decodable RFC 5322 message, threads, rate limits, disconnect."""

from __future__ import annotations

import base64
import email
import time
import uuid
from collections.abc import AsyncIterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import pytest
from renove.conexoes.v1 import email_service_pb2 as pb
from renove.conexoes.v1 import email_service_pb2_grpc as pb_grpc
from renove.conexoes.v1 import resources_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import EmailConnection
from server.auth.caller import Caller
from server.email.gmail import keeper as gmail_keeper
from tests.conftest import MakeCaller, MakeTenant, MigratedDatabase, PgServer, Tenant
from tests.integration.meta_leads_support import isolated_database, owner_engine_for
from tests.support.email_stack import SkewClock, job_done, sent_state, waiting_retry
from tests.support.google_stack import GoogleStack, google_stack
from tests.support.mail_servers import (
    SMTP_PASSWORD,
    SMTP_USER,
    MailCertificates,
    make_certificates,
    smtp_server,
)

ACCOUNT = "joao.silva@gmail.com"


@pytest.fixture(scope="module")
async def database(pg: PgServer) -> AsyncIterator[MigratedDatabase]:
    async with isolated_database(pg) as fresh:
        yield fresh


@pytest.fixture(scope="module")
async def owner_engine(database: MigratedDatabase) -> AsyncIterator[AsyncEngine]:
    async with owner_engine_for(database) as engine:
        yield engine


@pytest.fixture(scope="module")
def clock() -> SkewClock:
    return SkewClock()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> MailCertificates:
    return make_certificates(Path(tmp_path_factory.mktemp("certs")))


@pytest.fixture(scope="module")
async def stack(
    database: MigratedDatabase,
    tmp_path_factory: pytest.TempPathFactory,
    clock: SkewClock,
    certs: MailCertificates,
) -> AsyncIterator[GoogleStack]:
    folder = Path(tmp_path_factory.mktemp("gmail"))
    async with google_stack(
        database.owner_url,
        str(folder),
        clock=clock,
        smtp_allow_private_hosts=True,
        smtp_ca_file=str(certs.ca_file),
    ) as running:
        yield running


def stub(stack: GoogleStack) -> pb_grpc.EmailServiceStub:
    return pb_grpc.EmailServiceStub(stack.server.channel)


async def authorize(stack: GoogleStack, caller: Caller, *, cookie: bool = True) -> dict[str, str]:
    """The user asks for the URL, consents at Google, and the browser follows the callback
    through the sidecar; returns the frontend query the browser lands on."""
    call = stub(stack).GetGmailAuthUrl(pb.GetGmailAuthUrlRequest(), metadata=stack.md(caller))
    url = await call
    initial = await call.initial_metadata()
    set_cookie = next(str(v) for k, v in initial if k == "x-set-cookie")
    name, _, value = set_cookie.split(";", 1)[0].partition("=")
    assert name == "renove_oauth_email_gmail"
    query = parse_qs(urlsplit(url.oauth.auth_url).query)
    assert query["scope"][0].split() == [
        "https://www.googleapis.com/auth/gmail.send",
        "https://www.googleapis.com/auth/userinfo.email",
    ]
    assert query["access_type"] == ["offline"] and query["code_challenge_method"] == ["S256"]
    callback = stack.internal(await stack.consent(url.oauth.auth_url))
    headers = {"cookie": f"{name}={value}"} if cookie else {}
    landed = await stack.http.get(callback, headers=headers)
    assert landed.status_code == 302, landed.text
    return {k: v[0] for k, v in parse_qs(urlsplit(landed.headers["location"]).query).items()}


async def connected(stack: GoogleStack, tenant: Tenant, make_caller: MakeCaller) -> Caller:
    caller = make_caller(tenant)
    landed = await authorize(stack, caller)
    assert landed == {"conexao": "email_gmail", "status": "ok"}, landed
    return caller


async def sent_at_google(stack: GoogleStack) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = await stack.control_get("gmail/sent")
    return items


def parsed(item: dict[str, Any]) -> EmailMessage:
    raw = base64.urlsafe_b64decode(item["raw"])
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _request(subject: str, **changes: Any) -> pb.SendEmailRequest:
    values: dict[str, Any] = {
        "to": [pb.EmailAddress(email="cliente@exemplo.com.br", nome="Cliente")],
        "subject": subject,
        "body_text": "Olá! Segue a proposta.",
        "body_html": "<p>Olá! Segue a proposta.</p>",
        "request_id": str(uuid.uuid4()),
    }
    values.update(changes)
    return pb.SendEmailRequest(**values)


async def test_connect_send_reply_and_disconnect(
    stack: GoogleStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    caller = await connected(stack, tenant, make_caller)
    status = await stub(stack).GetEmailConnection(
        pb.GetEmailConnectionRequest(), metadata=stack.md(caller)
    )
    conn = status.connection
    assert conn.tipo == pb.EMAIL_CONNECTION_KIND_GMAIL_OAUTH
    assert conn.status == resources_pb2.CONNECTION_STATUS_ACTIVE
    assert (conn.email, conn.google_user_id) == (ACCOUNT, "109876543210987654321")
    assert conn.token_expires_at.seconds > 0 and not conn.smtp_password_set
    async with owner_engine.connect() as db:
        stored = (
            await db.execute(
                text(
                    "SELECT access_token_encrypted, refresh_token_encrypted FROM conexoes_email"
                    " WHERE organizacao_id = :t"
                ),
                {"t": tenant.id},
            )
        ).one()
    assert stored[0].startswith("v1:") and stored[1].startswith("v1:")

    subject = f"Proposta comercial — revisão {uuid.uuid4().hex[:6]}"
    first = await stub(stack).SendEmail(
        _request(subject, bcc=[pb.EmailAddress(email="oculto@exemplo.com.br")]),
        metadata=stack.md(caller),
    )
    assert first.tipo == pb.EMAIL_CONNECTION_KIND_GMAIL_OAUTH and first.remetente == ACCOUNT
    sent = await sent_state(
        stub(stack), stack.md(caller), first.id, resources_pb2.MESSAGE_STATUS_SENT
    )
    item = next(i for i in await sent_at_google(stack) if parsed(i)["Subject"] == subject)
    assert (sent.provider_message_id, sent.thread_id) == (item["id"], item["threadId"])
    message = parsed(item)
    assert message["From"] == f"Joao Silva <{ACCOUNT}>"
    assert message["Message-ID"] == first.message_id
    assert message["Bcc"] == "oculto@exemplo.com.br"  # Gmail delivers to it and strips it
    assert sorted(item["recipients"]) == ["cliente@exemplo.com.br", "oculto@exemplo.com.br"]
    html = message.get_body(("html",))
    assert html is not None and "Segue a proposta" in html.get_content()
    assert not item["uploaded"]

    reply = await stub(stack).SendEmail(
        _request("Re: " + subject, in_reply_to=first.message_id), metadata=stack.md(caller)
    )
    answered = await sent_state(
        stub(stack), stack.md(caller), reply.id, resources_pb2.MESSAGE_STATUS_SENT
    )
    assert answered.thread_id == sent.thread_id

    gone = await stub(stack).DisconnectEmail(
        pb.DisconnectEmailRequest(request_id=str(uuid.uuid4())), metadata=stack.md(caller)
    )
    assert gone.connection.status == resources_pb2.CONNECTION_STATUS_DISCONNECTED
    grants = await stack.control_get("grants")
    assert any(g.get("revoked") for g in grants), grants


async def test_a_large_message_goes_through_the_upload_endpoint(
    stack: GoogleStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    caller = await connected(stack, await make_tenant(), make_caller)
    subject = f"Anexo grande {uuid.uuid4().hex[:6]}"
    blob = bytes(range(256)) * (4_500_000 // 256)
    response = await stub(stack).SendEmail(
        _request(
            subject,
            attachments=[
                pb.EmailAttachment(
                    filename="catalogo.bin", content_type="application/octet-stream", content=blob
                )
            ],
        ),
        metadata=stack.md(caller),
    )
    await sent_state(stub(stack), stack.md(caller), response.id, resources_pb2.MESSAGE_STATUS_SENT)
    item = next(i for i in await sent_at_google(stack) if parsed(i)["Subject"] == subject)
    assert item["uploaded"]
    (attachment,) = list(parsed(item).iter_attachments())
    assert attachment.get_content() == blob

    # A reply that large stays in the thread (Gmail needs its threadId, not only References).
    first = next(i for i in await sent_at_google(stack) if parsed(i)["Subject"] == subject)
    reply = await stub(stack).SendEmail(
        _request(
            "Re: " + subject,
            in_reply_to=response.message_id,
            attachments=[
                pb.EmailAttachment(
                    filename="catalogo-2.bin",
                    content_type="application/octet-stream",
                    content=blob,
                )
            ],
        ),
        metadata=stack.md(caller),
    )
    answered = await sent_state(
        stub(stack), stack.md(caller), reply.id, resources_pb2.MESSAGE_STATUS_SENT
    )
    assert answered.thread_id == first["threadId"]
    item = next(i for i in await sent_at_google(stack) if parsed(i)["Subject"] == "Re: " + subject)
    assert item["uploaded"] and item["threadId"] == first["threadId"]


async def test_a_rate_limit_backs_off_and_then_sends(
    stack: GoogleStack,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    owner_engine: AsyncEngine,
    clock: SkewClock,
) -> None:
    tenant = await make_tenant()
    caller = await connected(stack, tenant, make_caller)
    await stack.http.post(
        f"{stack.google_url}/_control/gmail/fail",
        json=[{"status": 429, "reason": "rateLimitExceeded"}],
    )
    subject = f"Devagar {uuid.uuid4().hex[:6]}"
    response = await stub(stack).SendEmail(_request(subject), metadata=stack.md(caller))

    await waiting_retry(owner_engine, tenant.id, response.job_id)
    assert not [i for i in await sent_at_google(stack) if parsed(i)["Subject"] == subject]
    clock.advance(120)
    await sent_state(stub(stack), stack.md(caller), response.id, resources_pb2.MESSAGE_STATUS_SENT)
    row = await job_done(owner_engine, tenant.id, response.job_id)
    assert (row.status, row.tentativas) == ("completed", 2)


async def test_the_callback_from_another_browser_is_refused(
    stack: GoogleStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    caller = make_caller(await make_tenant())
    landed = await authorize(stack, caller, cookie=False)
    assert landed["status"] == "erro" and landed["motivo"] == "STATE_BROWSER_MISMATCH"
    status = await stub(stack).GetEmailConnection(
        pb.GetEmailConnectionRequest(), metadata=stack.md(caller)
    )
    assert status.connection.status == resources_pb2.CONNECTION_STATUS_DISCONNECTED


async def test_auth_url_needs_the_google_app(
    stack: GoogleStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    """Member of the tenant can ask; a denied consent lands with ACCESS_DENIED."""
    caller = make_caller(await make_tenant())
    call = stub(stack).GetGmailAuthUrl(pb.GetGmailAuthUrlRequest(), metadata=stack.md(caller))
    url = await call
    initial = await call.initial_metadata()
    cookie = next(str(v) for k, v in initial if k == "x-set-cookie").split(";")[0]
    name, _, value = cookie.partition("=")
    callback = stack.internal(await stack.consent(url.oauth.auth_url, "deny"))
    landed = await stack.http.get(callback, headers={"cookie": f"{name}={value}"})
    query = parse_qs(urlsplit(landed.headers["location"]).query)
    assert query["status"] == ["erro"] and query["motivo"] == ["ACCESS_DENIED"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub(stack).SendEmail(_request("x"), metadata=stack.md(caller))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_saving_smtp_replaces_gmail_and_revokes_its_grant(
    stack: GoogleStack, make_tenant: MakeTenant, make_caller: MakeCaller, certs: MailCertificates
) -> None:
    caller = await connected(stack, await make_tenant(), make_caller)
    live_before = [g for g in await stack.control_get("grants") if not g.get("revoked")]
    with smtp_server(certs.trusted) as smtp:
        saved = await stub(stack).SaveSmtpConfig(
            pb.SaveSmtpConfigRequest(
                email=SMTP_USER, senha=SMTP_PASSWORD, smtp_host=smtp.host, smtp_port=smtp.port
            ),
            metadata=stack.md(caller),
        )
    assert saved.tipo == pb.EMAIL_CONNECTION_KIND_SMTP_MANUAL
    live_after = [g for g in await stack.control_get("grants") if not g.get("revoked")]
    assert len(live_after) == len(live_before) - 1
    status = await stub(stack).GetEmailConnection(
        pb.GetEmailConnectionRequest(), metadata=stack.md(caller)
    )
    assert status.connection.google_user_id == "" and status.connection.smtp_password_set


async def test_the_browser_flow_over_http(
    stack: GoogleStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    """The frontend asks the gateway for the URL (the binding cookie comes with it), the
    browser consents and comes back with that cookie: connected."""
    caller = make_caller(await make_tenant())
    answer = await stack.http.get(
        f"{stack.sidecar_url}/api/v1/conexoes/email/google/auth-url",
        headers={"authorization": f"Bearer {stack.server.token(caller)}"},
    )
    assert answer.status_code == 200, answer.text
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("renove_oauth_email_gmail=") and "HttpOnly" in cookie
    name, _, value = cookie.split(";", 1)[0].partition("=")
    callback = stack.internal(await stack.consent(answer.json()["auth_url"]))
    landed = await stack.http.get(callback, headers={"cookie": f"{name}={value}"})
    query = parse_qs(urlsplit(landed.headers["location"]).query)
    assert query["status"] == ["ok"], query
    status = await stub(stack).GetEmailConnection(
        pb.GetEmailConnectionRequest(), metadata=stack.md(caller)
    )
    assert status.connection.tipo == pb.EMAIL_CONNECTION_KIND_GMAIL_OAUTH


async def _refreshes(stack: GoogleStack, account: str) -> int:
    grants = await stack.control_get("grants")
    return sum(int(g["refreshes"]) for g in grants if g["email"] == account)


async def test_a_401_on_send_gets_one_forced_refresh_and_the_email_goes(
    stack: GoogleStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    caller = await connected(stack, await make_tenant(), make_caller)
    before = await _refreshes(stack, ACCOUNT)
    await stack.control("access-tokens/expire")  # Google answers 401 to the stored token
    subject = f"Depois do 401 {uuid.uuid4().hex[:6]}"
    response = await stub(stack).SendEmail(_request(subject), metadata=stack.md(caller))
    await sent_state(stub(stack), stack.md(caller), response.id, resources_pb2.MESSAGE_STATUS_SENT)
    assert [parsed(i)["Subject"] for i in await sent_at_google(stack)].count(subject) == 1
    assert await _refreshes(stack, ACCOUNT) == before + 1


async def test_a_dead_grant_on_send_fails_the_email_revokes_and_alerts_the_owner(
    stack: GoogleStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    account = f"ana.{uuid.uuid4().hex[:6]}@gmail.com"
    await stack.control("account", {"email": account})
    try:
        tenant = await make_tenant()
        caller = await connected(stack, tenant, make_caller)
    finally:
        await stack.control("account", {})
    await stack.control("grants/revoke", {"email": account})  # the user removed the app
    await stack.control("access-tokens/expire")
    subject = f"Sem acesso {uuid.uuid4().hex[:6]}"
    response = await stub(stack).SendEmail(_request(subject), metadata=stack.md(caller))
    failed = await sent_state(
        stub(stack), stack.md(caller), response.id, resources_pb2.MESSAGE_STATUS_FAILED
    )
    assert failed.erro
    assert subject not in [parsed(i)["Subject"] for i in await sent_at_google(stack)]
    row = await job_done(owner_engine, tenant.id, response.job_id)
    assert (row.status, row.tentativas) == ("failed", 1)  # a dead grant is not retried
    status = await stub(stack).GetEmailConnection(
        pb.GetEmailConnectionRequest(), metadata=stack.md(caller)
    )
    assert status.connection.status == resources_pb2.CONNECTION_STATUS_REVOKED
    async with owner_engine.connect() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, false)"), {"t": str(tenant.id)}
        )
        alerted = (
            await conn.execute(
                text("SELECT usuario_id FROM alerts WHERE organizacao_id = :t"), {"t": tenant.id}
            )
        ).all()
        await conn.execute(text("RESET app.current_tenant"))
    assert caller.user_id in [a.usuario_id for a in alerted]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub(stack).SendEmail(_request("De novo"), metadata=stack.md(caller))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_the_scheduler_refreshes_a_gmail_token_ahead_of_expiry(
    stack: GoogleStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    caller = await connected(stack, tenant, make_caller)
    assert f"tokens.refresh_ahead.{EmailConnection.__tablename__}" in (
        stack.server.deps.scheduler.names
    )
    status = await stub(stack).GetEmailConnection(
        pb.GetEmailConnectionRequest(), metadata=stack.md(caller)
    )
    conn_id = uuid.UUID(status.connection.id)
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE conexoes_email SET token_expires_at = now() + interval '5 minutes'"
                " WHERE id = :id"
            ),
            {"id": conn_id},
        )
    before = await _refreshes(stack, ACCOUNT)
    outcomes = await gmail_keeper(stack.server.deps).refresh_due()
    assert outcomes[conn_id] == "refreshed"
    assert await _refreshes(stack, ACCOUNT) >= before + 1
    after = await stub(stack).GetEmailConnection(
        pb.GetEmailConnectionRequest(), metadata=stack.md(caller)
    )
    # The new token lives about an hour again (it had 5 minutes left).
    assert after.connection.token_expires_at.seconds > time.time() + 30 * 60
    assert after.connection.status == resources_pb2.CONNECTION_STATUS_ACTIVE
