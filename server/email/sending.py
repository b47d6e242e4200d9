"""SendEmail: validate, build the message, store it (`emails_enviados`) and queue its send
(`email_send`, the spec's e-mail policy), all in one transaction."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from renove.conexoes.v1 import email_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Contact, Opportunity, SentEmail
from server.auth.caller import Caller
from server.email import mime, tracking
from server.email.connection import require_usable, row_of
from server.email.errors import ContactNotFound
from server.email.views import kind
from server.errors import FieldViolation, InvalidArgument, NotFound
from server.idempotency import answer_in
from server.outbox import record_change
from server.protoconv import parse_uuid
from server.resilience.jobs import enqueue
from server.resilience.operations import EMAIL_SEND

if TYPE_CHECKING:
    from server.bootstrap import Deps

MAX_RECIPIENTS = 100
MAX_SUBJECT = 998  # RFC 5322 line limit


def _mailboxes(
    items: list[pb.EmailAddress], field: str, problems: list[FieldViolation]
) -> list[mime.Mailbox]:
    out = []
    for i, item in enumerate(items):
        problems.extend(mime.check_mailbox(item.email.strip(), item.nome, f"{field}[{i}]"))
        out.append(mime.Mailbox(item.email.strip(), item.nome.strip()))
    return out


def _attachments(
    request: pb.SendEmailRequest, problems: list[FieldViolation]
) -> list[mime.Attachment]:
    out = []
    for i, item in enumerate(request.attachments):
        name, ctype = item.filename.strip(), item.content_type.strip().lower()
        if not name or "\r" in name or "\n" in name or "/" in name:
            problems.append(FieldViolation(f"attachments[{i}].filename", "a file name"))
        main, _, sub = ctype.partition("/")
        if not main or not sub or " " in ctype:
            problems.append(FieldViolation(f"attachments[{i}].content_type", "a MIME type"))
        out.append(mime.Attachment(name, ctype, item.content))
    return out


def _validate(request: pb.SendEmailRequest) -> tuple[mime.Draft, list[str]]:
    """The draft (sender filled in later) and the Bcc addresses, or every problem at once."""
    problems: list[FieldViolation] = []
    to = _mailboxes(list(request.to), "to", problems)
    cc = _mailboxes(list(request.cc), "cc", problems)
    bcc = _mailboxes(list(request.bcc), "bcc", problems)
    if not to:
        problems.append(FieldViolation("to", "at least one recipient"))
    if len(to) + len(cc) + len(bcc) > MAX_RECIPIENTS:
        problems.append(FieldViolation("to", f"at most {MAX_RECIPIENTS} recipients in all"))
    subject = request.subject.strip()
    if not subject:
        problems.append(FieldViolation("subject", "required"))
    elif len(subject) > MAX_SUBJECT or "\r" in subject or "\n" in subject:
        problems.append(FieldViolation("subject", f"one line, at most {MAX_SUBJECT} characters"))
    if not request.body_text.strip() and not request.body_html.strip():
        problems.append(FieldViolation("body_text", "give body_text, body_html or both"))
    reply_to = None
    if request.HasField("reply_to") and request.reply_to.email:
        reply_to = _mailboxes([request.reply_to], "reply_to", problems)[0]
    problems.extend(mime.check_message_id(request.in_reply_to.strip(), "in_reply_to"))
    attachments = _attachments(request, problems)
    if problems:
        raise InvalidArgument("invalid e-mail", problems)
    draft = mime.Draft(
        sender=mime.Mailbox("nobody@invalid.invalid"),
        to=to,
        cc=cc,
        subject=subject,
        text=request.body_text,
        html=request.body_html,
        attachments=attachments,
        reply_to=reply_to,
        in_reply_to=request.in_reply_to.strip(),
    )
    return draft, [m.email for m in bcc]


async def send(deps: Deps, caller: Caller, request: pb.SendEmailRequest) -> pb.SendEmailResponse:
    tenant, user = caller.require_tenant(), caller.require_user()
    draft, bcc = _validate(request)
    contato_id = parse_uuid(request.contato_id, "contato_id") if request.contato_id else None
    oportunidade_id = (
        parse_uuid(request.oportunidade_id, "oportunidade_id") if request.oportunidade_id else None
    )
    async with deps.db.unit_of_work(caller) as tx:
        connection = require_usable(await row_of(tx, user))
        if contato_id is not None and not await tx.scalar(
            select(Contact.id).where(Contact.id == contato_id, Contact.deletado_em.is_(None))
        ):
            raise ContactNotFound("contact not found", metadata={"contato_id": str(contato_id)})
        if oportunidade_id is not None and not await tx.scalar(
            select(Opportunity.id).where(Opportunity.id == oportunidade_id)
        ):
            raise NotFound(
                "opportunity not found", metadata={"oportunidade_id": str(oportunidade_id)}
            )
        email_id = uuid.uuid4()
        # A reply to one of our own messages stays in its Gmail thread.
        thread_id = (
            await tx.scalar(
                select(SentEmail.thread_id).where(
                    SentEmail.usuario_id == user,
                    SentEmail.message_id == draft.in_reply_to,
                    SentEmail.thread_id.is_not(None),
                )
            )
            if draft.in_reply_to
            else None
        )
        sender = mime.Mailbox(connection.email, connection.nome_remetente or "")
        html = draft.html
        if request.rastrear_abertura:
            html = mime.with_pixel(
                html or mime.tracking_html(draft.text), tracking.pixel_url(deps, tenant, email_id)
            )
        message_id = mime.new_message_id(connection.email)
        message = mime.build(
            mime.Draft(
                sender=sender,
                to=draft.to,
                cc=draft.cc,
                subject=draft.subject,
                text=draft.text,
                html=html,
                attachments=draft.attachments,
                reply_to=draft.reply_to,
                in_reply_to=draft.in_reply_to,
            ),
            message_id=message_id,
            date=deps.clock.now(),
        )
        raw = message.as_bytes()
        if len(raw) > mime.MAX_MESSAGE_BYTES:
            raise InvalidArgument.field("attachments", "the whole message is limited to 20 MB")
        row = SentEmail(
            id=email_id,
            organizacao_id=tenant,
            usuario_id=user,
            conexao_id=connection.id,
            tipo=connection.tipo,
            remetente=connection.email,
            destinatarios={
                "to": [m.email for m in draft.to],
                "cc": [m.email for m in draft.cc],
                "bcc": bcc,
            },
            assunto=draft.subject,
            message_id=message_id,
            mensagem=raw,
            status="pending",
            contato_id=contato_id,
            oportunidade_id=oportunidade_id,
            rastrear_abertura=request.rastrear_abertura,
            thread_id=thread_id,
        )
        tx.add(row)
        await tx.flush()
        job_id = await enqueue(
            tx,
            tenant_id=tenant,
            operation=EMAIL_SEND,
            payload={"email_id": str(email_id)},
            idempotency_key=f"{EMAIL_SEND.name}:{email_id}",
            destino=", ".join(m.email for m in draft.to)[:255],
        )
        await record_status(tx, row)
        response = pb.SendEmailResponse(
            id=str(email_id),
            job_id=str(job_id or ""),
            status=resources_pb2.MESSAGE_STATUS_QUEUED,
            message_id=message_id,
            tipo=kind(connection.tipo),
            remetente=connection.email,
        )
        await answer_in(tx, response)
        return response


async def record_status(tx: AsyncSession, row: SentEmail) -> None:
    """The e-mail's state on the change feed (queued, sent, failed), in the caller's
    transaction: the CRM core logs it on the contact's timeline."""
    await record_change(
        tx,
        row.organizacao_id,
        "MESSAGE_STATUS",
        {
            "canal": "email",
            "id": str(row.id),
            "status": row.status,
            "message_id": row.message_id,
            "tipo": row.tipo,
            "remetente": row.remetente,
            "to": list(row.destinatarios.get("to") or ()),
            "cc": list(row.destinatarios.get("cc") or ()),
            "assunto": row.assunto,
            "contato_id": row.contato_id,
            "oportunidade_id": row.oportunidade_id,
            "provider_message_id": row.provider_message_id,
            "thread_id": row.thread_id,
            "enviado_em": row.enviado_em,
            "erro": row.erro,
        },
        user_id=row.usuario_id,
    )
