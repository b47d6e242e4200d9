"""Sending e-mail through a saved SMTP connection: what arrives at the mail server (byte for
byte), retries (451) and final failures (550, 535), idempotency, and open tracking through
the sidecar's pixel."""

from __future__ import annotations

import email
import re
import time
import uuid
from collections.abc import AsyncIterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from renove.conexoes.v1 import connections_service_pb2 as cpb
from renove.conexoes.v1 import connections_service_pb2_grpc as cpb_grpc
from renove.conexoes.v1 import email_service_pb2 as pb
from renove.conexoes.v1 import kpis_service_pb2 as kpb
from renove.conexoes.v1 import kpis_service_pb2_grpc as kpb_grpc
from renove.conexoes.v1 import resources_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.auth.caller import Caller, Role
from tests.conftest import MakeCaller, MakeTenant, MigratedDatabase, PgServer, Tenant
from tests.integration.meta_leads_support import isolated_database, owner_engine_for
from tests.support.email_stack import (
    EmailStack,
    email_stack,
    job_done,
    sent_state,
    waiting_retry,
)
from tests.support.mail_servers import SMTP_PASSWORD, SMTP_USER, Received

T = TypeVar("T")
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"


@pytest.fixture(scope="module")
async def database(pg: PgServer) -> AsyncIterator[MigratedDatabase]:
    async with isolated_database(pg) as fresh:
        yield fresh


@pytest.fixture(scope="module")
async def owner_engine(database: MigratedDatabase) -> AsyncIterator[AsyncEngine]:
    async with owner_engine_for(database) as engine:
        yield engine


@pytest.fixture(scope="module")
async def stack(
    database: MigratedDatabase, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[EmailStack]:
    async with email_stack(database.owner_url, Path(tmp_path_factory.mktemp("email"))) as s:
        yield s


async def connected(stack: EmailStack, tenant: Tenant, make_caller: MakeCaller) -> Caller:
    caller = make_caller(tenant)
    await stack.stub.SaveSmtpConfig(
        pb.SaveSmtpConfigRequest(
            email=SMTP_USER,
            senha=SMTP_PASSWORD,
            smtp_host=stack.smtp.host,
            smtp_port=stack.smtp.port,
            nome_remetente="João Silva",
        ),
        metadata=stack.md(caller),
    )
    return caller


def _request(subject: str, **changes: Any) -> pb.SendEmailRequest:
    values: dict[str, Any] = {
        "to": [pb.EmailAddress(email="cliente@exemplo.com.br", nome="Cliente Ação")],
        "subject": subject,
        "body_text": "Olá! Segue a proposta.",
        "request_id": str(uuid.uuid4()),
    }
    values.update(changes)
    return pb.SendEmailRequest(**values)


def arrived(stack: EmailStack, subject: str) -> list[Received]:
    found = []
    for item in stack.smtp.handler.received:
        parsed = email.message_from_bytes(item.data, policy=policy.default)
        if parsed["Subject"] == subject:
            found.append(item)
    return found


def _reason(exc: grpc.aio.AioRpcError) -> tuple[str, list[str]]:
    status = status_pb2.Status()
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status.ParseFromString(value)  # type: ignore[arg-type]
    reason, fields = "", []
    for detail in status.details:
        info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(bad):
            fields = [v.field for v in bad.field_violations]
    return reason, fields


async def test_the_email_arrives_byte_correct(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    caller = await connected(stack, tenant, make_caller)
    subject = f"Proposta comercial — revisão ✓ {uuid.uuid4().hex[:6]}"
    pdf = b"%PDF-1.4\n" + bytes(range(256))
    response = await stack.stub.SendEmail(
        _request(
            subject,
            cc=[pb.EmailAddress(email="gerente@exemplo.com.br")],
            bcc=[pb.EmailAddress(email="oculto@exemplo.com.br")],
            reply_to=pb.EmailAddress(email="respostas@empresa.com.br", nome="Vendas"),
            body_html="<p>Olá! <b>Segue</b> a proposta.</p>",
            attachments=[
                pb.EmailAttachment(
                    filename="proposta.pdf", content_type="application/pdf", content=pdf
                )
            ],
            in_reply_to="<anterior.123@exemplo.com.br>",
        ),
        metadata=stack.md(caller),
    )
    assert response.status == resources_pb2.MESSAGE_STATUS_QUEUED
    assert response.remetente == SMTP_USER
    sent = await sent_state(
        stack.stub, stack.md(caller), response.id, resources_pb2.MESSAGE_STATUS_SENT
    )
    assert sent.message_id == response.message_id and sent.enviado_em.seconds > 0

    (got,) = arrived(stack, subject)
    assert got.mail_from == SMTP_USER
    assert sorted(got.rcpt_tos) == [
        "cliente@exemplo.com.br",
        "gerente@exemplo.com.br",
        "oculto@exemplo.com.br",
    ]
    head = got.data.split(b"\r\n\r\n", 1)[0]
    assert b"oculto@exemplo.com.br" not in got.data and b"\nBcc:" not in head
    assert all(line.isascii() for line in head.split(b"\r\n"))  # encoded words, not raw UTF-8
    message = email.message_from_bytes(got.data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == subject
    assert message["From"] == f"João Silva <{SMTP_USER}>"
    assert message["To"] == "Cliente Ação <cliente@exemplo.com.br>"
    assert message["Cc"] == "gerente@exemplo.com.br"
    assert message["Reply-To"] == "Vendas <respostas@empresa.com.br>"
    assert message["Message-ID"] == response.message_id
    assert message["In-Reply-To"] == "<anterior.123@exemplo.com.br>"
    assert message["References"] == "<anterior.123@exemplo.com.br>"
    assert message.get_content_type() == "multipart/mixed"
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and plain.get_content().strip() == "Olá! Segue a proposta."
    assert html is not None and html.get_content().strip() == (
        "<p>Olá! <b>Segue</b> a proposta.</p>"
    )
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "proposta.pdf"
    assert attachment.get_content() == pdf

    status = await stack.stub.GetEmailConnection(
        pb.GetEmailConnectionRequest(), metadata=stack.md(caller)
    )
    assert status.connection.total_emails_enviados == 1
    assert status.connection.ultimo_envio.seconds > 0

    async with owner_engine.connect() as conn:
        feed = (
            await conn.execute(
                text(
                    "SELECT tipo, payload FROM outbox_eventos WHERE organizacao_id = :t"
                    " AND payload->>'id' = :id ORDER BY sequencia"
                ),
                {"t": tenant.id, "id": response.id},
            )
        ).all()
    assert [(f.tipo, f.payload["canal"], f.payload["status"]) for f in feed] == [
        ("MESSAGE_STATUS", "email", "pending"),
        ("MESSAGE_STATUS", "email", "sent"),
    ]
    assert feed[1].payload["to"] == ["cliente@exemplo.com.br"]
    assert "oculto@exemplo.com.br" not in str(feed[1].payload)


async def test_the_same_request_id_sends_once(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    caller = await connected(stack, await make_tenant(), make_caller)
    subject = f"Uma vez só {uuid.uuid4().hex[:6]}"
    request = _request(subject)
    first = await stack.stub.SendEmail(request, metadata=stack.md(caller))
    again = await stack.stub.SendEmail(request, metadata=stack.md(caller))
    assert again == first
    await sent_state(stack.stub, stack.md(caller), first.id, resources_pb2.MESSAGE_STATUS_SENT)
    assert len(arrived(stack, subject)) == 1


async def test_a_451_is_retried_and_then_delivered(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    caller = await connected(stack, tenant, make_caller)
    subject = f"Tente de novo {uuid.uuid4().hex[:6]}"
    stack.smtp.handler.replies.append("451 4.3.0 Mailbox temporarily unavailable")
    response = await stack.stub.SendEmail(_request(subject), metadata=stack.md(caller))

    await waiting_retry(owner_engine, tenant.id, response.job_id)
    assert not arrived(stack, subject)
    stack.clock.advance(60)  # past the e-mail policy's first backoff (3 s + jitter)
    await sent_state(stack.stub, stack.md(caller), response.id, resources_pb2.MESSAGE_STATUS_SENT)
    assert len(arrived(stack, subject)) == 1
    row = await job_done(owner_engine, tenant.id, response.job_id)
    assert (row.status, row.tentativas) == ("completed", 2)


async def test_a_550_is_final(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    caller = await connected(stack, tenant, make_caller)
    subject = f"Recusado {uuid.uuid4().hex[:6]}"
    stack.smtp.handler.replies.append("550 5.1.1 User unknown")
    response = await stack.stub.SendEmail(_request(subject), metadata=stack.md(caller))
    failed = await sent_state(
        stack.stub, stack.md(caller), response.id, resources_pb2.MESSAGE_STATUS_FAILED
    )
    assert "550" in failed.erro
    row = await job_done(owner_engine, tenant.id, response.job_id)
    assert (row.status, row.tentativas) == ("failed", 1)
    status = await stack.stub.GetEmailConnection(
        pb.GetEmailConnectionRequest(), metadata=stack.md(caller)
    )
    assert status.connection.status == resources_pb2.CONNECTION_STATUS_ACTIVE


async def test_the_kpis_count_sent_and_failed_emails_in_the_error_rate(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    caller = await connected(stack, tenant, make_caller)
    since = timestamp_pb2.Timestamp()
    since.FromSeconds(int(time.time()) - 60)
    sent = await stack.stub.SendEmail(_request("Vai"), metadata=stack.md(caller))
    await sent_state(stack.stub, stack.md(caller), sent.id, resources_pb2.MESSAGE_STATUS_SENT)
    stack.smtp.handler.replies.append("550 5.1.1 User unknown")
    refused = await stack.stub.SendEmail(_request("Não vai"), metadata=stack.md(caller))
    await sent_state(stack.stub, stack.md(caller), refused.id, resources_pb2.MESSAGE_STATUS_FAILED)
    await job_done(owner_engine, tenant.id, sent.job_id)
    await job_done(owner_engine, tenant.id, refused.job_id)

    kpis = await kpb_grpc.KpisServiceStub(stack.server.channel).GetConnectionKpis(
        kpb.GetConnectionKpisRequest(start_time=since),
        metadata=stack.md(make_caller(tenant, Role.ADMIN)),
    )
    by_type = {t.connection_type: t for t in kpis.types}
    smtp = by_type[resources_pb2.CONNECTION_TYPE_EMAIL_SMTP_MANUAL]
    assert (smtp.jobs_finished, smtp.jobs_failed, smtp.error_rate) == (2, 1, 0.5)
    gmail = by_type[resources_pb2.CONNECTION_TYPE_EMAIL_GMAIL_OAUTH]
    assert (gmail.jobs_finished, gmail.error_rate) == (0, 0.0)


async def test_a_535_marks_the_connection_and_alerts_its_owner(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    caller = await connected(stack, tenant, make_caller)
    stack.smtp.handler.password = "trocada-no-provedor"
    try:
        response = await stack.stub.SendEmail(_request("Senha trocada"), metadata=stack.md(caller))
        failed = await sent_state(
            stack.stub, stack.md(caller), response.id, resources_pb2.MESSAGE_STATUS_FAILED
        )
    finally:
        stack.smtp.handler.password = SMTP_PASSWORD
    assert "535" in failed.erro
    row = await job_done(owner_engine, tenant.id, response.job_id)
    assert (row.status, row.tentativas) == ("failed", 1)
    status = await stack.stub.GetEmailConnection(
        pb.GetEmailConnectionRequest(), metadata=stack.md(caller)
    )
    assert status.connection.status == resources_pb2.CONNECTION_STATUS_ERROR
    assert "535" in status.connection.ultimo_erro
    async with owner_engine.connect() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, false)"), {"t": str(tenant.id)}
        )
        alerts = (
            await conn.execute(
                text(
                    "SELECT usuario_id, audience FROM alerts"
                    " WHERE kind = 'connection_lost' AND organizacao_id = :t"
                ),
                {"t": tenant.id},
            )
        ).all()
        await conn.execute(text("RESET app.current_tenant"))
    assert [(a.usuario_id, a.audience) for a in alerts] == [(tenant.member_id, "tenant_admin")]

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.SendEmail(_request("De novo"), metadata=stack.md(caller))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _reason(err.value)[0] == "CONNECTION_ERROR"

    # Saving the right password again brings it back.
    await connected(stack, tenant, make_caller)
    status = await stack.stub.GetEmailConnection(
        pb.GetEmailConnectionRequest(), metadata=stack.md(caller)
    )
    assert status.connection.status == resources_pb2.CONNECTION_STATUS_ACTIVE


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({"to": []}, ["to"]),
        ({"to": [pb.EmailAddress(email="nao-e-email")]}, ["to[0].email"]),
        ({"subject": " "}, ["subject"]),
        ({"body_text": ""}, ["body_text"]),
        ({"cc": [pb.EmailAddress(email="x@y.com", nome="a\r\nBcc: z@y.com")]}, ["cc[0].nome"]),
        ({"in_reply_to": "sem-colchetes"}, ["in_reply_to"]),
    ],
    ids=["no-recipient", "bad-address", "no-subject", "no-body", "header-injection", "thread"],
)
async def test_bad_input_is_refused_and_nothing_is_stored(
    changes: dict[str, Any],
    fields: list[str],
    stack: EmailStack,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    owner_engine: AsyncEngine,
) -> None:
    tenant = await make_tenant()
    caller = await connected(stack, tenant, make_caller)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.SendEmail(
            _request(**{"subject": "x", **changes}), metadata=stack.md(caller)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _reason(err.value)[1] == fields
    async with owner_engine.connect() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, false)"), {"t": str(tenant.id)}
        )
        count = await conn.scalar(
            text("SELECT count(*) FROM emails_enviados WHERE organizacao_id = :t"),
            {"t": tenant.id},
        )
        await conn.execute(text("RESET app.current_tenant"))
    assert count == 0


async def test_sending_needs_a_connection(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    caller = make_caller(await make_tenant())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.SendEmail(_request("Sem conexao"), metadata=stack.md(caller))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _reason(err.value)[0] == "CONNECTION_NOT_FOUND"


async def test_an_open_is_counted_once_per_message(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    caller = await connected(stack, await make_tenant(), make_caller)
    subject = f"Rastreado {uuid.uuid4().hex[:6]}"
    response = await stack.stub.SendEmail(
        _request(subject, rastrear_abertura=True), metadata=stack.md(caller)
    )
    await sent_state(stack.stub, stack.md(caller), response.id, resources_pb2.MESSAGE_STATUS_SENT)
    (got,) = arrived(stack, subject)
    message = email.message_from_bytes(got.data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    html = message.get_body(("html",))
    assert html is not None
    found = re.search(r'src="([^"]+)"', html.get_content())
    assert found is not None
    pixel = found.group(1)
    assert pixel.startswith(f"{stack.sidecar_url}/api/v1/conexoes/email/abertura/")

    async def opens() -> pb.SentEmail:
        got = await stack.stub.GetSentEmail(
            pb.GetSentEmailRequest(id=response.id), metadata=stack.md(caller)
        )
        return got.email

    scanner = await stack.http.get(pixel, headers={"user-agent": "Barracuda Sentinel (EE)"})
    assert scanner.status_code == 200 and scanner.headers["content-type"] == "image/gif"
    assert (await opens()).aberturas == 0

    for _ in range(3):  # one reading: the client fetches the image more than once
        image = await stack.http.get(pixel, headers={"user-agent": BROWSER})
        assert image.status_code == 200 and image.content.startswith(b"GIF89a")
        assert "no-store" in image.headers["cache-control"]
    first = await opens()
    assert first.aberturas == 1 and first.primeira_abertura_em.seconds > 0

    stack.clock.advance(3600)  # read again an hour later
    await stack.http.get(pixel, headers={"user-agent": BROWSER})
    later = await opens()
    assert later.aberturas == 2
    assert later.primeira_abertura_em == first.primeira_abertura_em
    assert later.ultima_abertura_em.seconds > first.ultima_abertura_em.seconds

    forged = pixel[:-6] + ("AAAAAA" if not pixel.endswith("AAAAAA") else "BBBBBB")
    answer = await stack.http.get(forged, headers={"user-agent": BROWSER})
    assert answer.status_code == 200 and answer.content.startswith(b"GIF89a")
    assert (await opens()).aberturas == 2


async def test_untracked_email_has_no_pixel_and_counts_nothing(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    caller = await connected(stack, await make_tenant(), make_caller)
    subject = f"Sem rastreio {uuid.uuid4().hex[:6]}"
    response = await stack.stub.SendEmail(_request(subject), metadata=stack.md(caller))
    await sent_state(stack.stub, stack.md(caller), response.id, resources_pb2.MESSAGE_STATUS_SENT)
    (got,) = arrived(stack, subject)
    assert b"/email/abertura/" not in got.data


async def _status_changes(owner_engine: AsyncEngine, tenant: uuid.UUID, email_id: str) -> list[str]:
    async with owner_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT payload->>'status' AS status FROM outbox_eventos"
                    " WHERE organizacao_id = :t AND tipo = 'MESSAGE_STATUS'"
                    " AND payload->>'id' = :id ORDER BY sequencia"
                ),
                {"t": tenant, "id": email_id},
            )
        ).all()
    return [r.status for r in rows]


async def test_a_failed_email_retried_from_the_dead_letter_queue_is_sent(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    caller = await connected(stack, tenant, make_caller)
    admin = make_caller(tenant, Role.ADMIN)
    subject = f"Da fila de falhas {uuid.uuid4().hex[:6]}"
    stack.smtp.handler.replies.append("550 5.7.1 Policy rejection")
    response = await stack.stub.SendEmail(_request(subject), metadata=stack.md(caller))
    await sent_state(stack.stub, stack.md(caller), response.id, resources_pb2.MESSAGE_STATUS_FAILED)
    assert (await job_done(owner_engine, tenant.id, response.job_id)).status == "failed"

    connections = cpb_grpc.ConnectionsServiceStub(stack.server.channel)
    await connections.RetryFailedEvent(
        cpb.RetryFailedEventRequest(id=response.job_id, reset_tentativas=True),
        metadata=stack.md(admin),
    )
    sent = await sent_state(
        stack.stub, stack.md(caller), response.id, resources_pb2.MESSAGE_STATUS_SENT
    )
    assert sent.erro == ""
    assert len(arrived(stack, subject)) == 1
    assert (await job_done(owner_engine, tenant.id, response.job_id)).status == "completed"
    assert await _status_changes(owner_engine, tenant.id, response.id) == [
        "pending",
        "failed",
        "sent",
    ]


async def test_an_email_whose_worker_was_lost_on_its_last_attempt_is_failed(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    caller = await connected(stack, tenant, make_caller)
    subject = f"Perdido {uuid.uuid4().hex[:6]}"
    worker = stack.server.deps.worker
    await worker.stop()
    try:
        response = await stack.stub.SendEmail(_request(subject), metadata=stack.md(caller))
        # Every attempt spent by workers that died mid-attempt (each reclaim counts one).
        async with owner_engine.begin() as conn:
            await conn.execute(
                text("UPDATE eventos_pendentes SET tentativas = max_tentativas WHERE id = :id"),
                {"id": response.job_id},
            )
    finally:
        await worker.start()
    failed = await sent_state(
        stack.stub, stack.md(caller), response.id, resources_pb2.MESSAGE_STATUS_FAILED
    )
    assert "no attempts left" in failed.erro
    assert not arrived(stack, subject)
    assert (await job_done(owner_engine, tenant.id, response.job_id)).status == "failed"
    assert await _status_changes(owner_engine, tenant.id, response.id) == ["pending", "failed"]


async def test_a_queued_email_is_not_sent_through_a_replaced_connection(
    stack: EmailStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    caller = await connected(stack, tenant, make_caller)
    subject = f"Remetente trocado {uuid.uuid4().hex[:6]}"
    worker = stack.server.deps.worker
    await worker.stop()
    try:
        response = await stack.stub.SendEmail(_request(subject), metadata=stack.md(caller))
        # Before it goes, the user saves another address on the same mail server.
        await stack.stub.SaveSmtpConfig(
            pb.SaveSmtpConfigRequest(
                email="vendas@exemplo.com.br",
                smtp_user=SMTP_USER,
                senha=SMTP_PASSWORD,
                smtp_host=stack.smtp.host,
                smtp_port=stack.smtp.port,
            ),
            metadata=stack.md(caller),
        )
    finally:
        await worker.start()
    failed = await sent_state(
        stack.stub, stack.md(caller), response.id, resources_pb2.MESSAGE_STATUS_FAILED
    )
    assert SMTP_USER in failed.erro and "vendas@exemplo.com.br" in failed.erro
    assert not arrived(stack, subject)
    row = await job_done(owner_engine, tenant.id, response.job_id)
    assert (row.status, row.tentativas) == ("failed", 1)
