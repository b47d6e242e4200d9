"""Sending a DM (spec 7.6 POST /mensagens): checked against the messaging window before
anything is queued, stored pending and sent by the `instagram_send` job (the Instagram
policy: 3 attempts, 2 s exponential, 15 s per attempt) under the instagram breaker.

The window is checked again when the job runs (time passes in a queue) and Instagram's own
window error is mapped to the same MESSAGING_WINDOW_CLOSED. A send made with a user's token
is a person's; one made by the service identity is automated (never HUMAN_AGENT).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Contact, InstagramConnection, Message
from server.auth.caller import Caller, Role
from server.bootstrap import Deps
from server.errors import CircuitOpen, DomainError, InvalidArgument
from server.instagram import refresh
from server.instagram.connection import (
    break_on_auth_error,
    client,
    dead_token_error,
    own_connection,
    tenant_service,
    usable,
)
from server.instagram.errors import ConversationNotFound, MessagingWindowClosed
from server.instagram.views import CANAL
from server.instagram.window import decide
from server.outbox import record_change
from server.providers.errors import ProviderAuthError, ProviderError
from server.providers.instagram import is_window_error
from server.resilience.jobs import Job, before_the_provider, enqueue
from server.resilience.operations import INSTAGRAM_SEND
from server.security.redaction import redact

# A failed message is sent again when an admin retries its dead-lettered job.
_UNSENT = ("pending", "failed")
MAX_TEXT_BYTES = 1000  # Instagram's limit on a text message (UTF-8 bytes)
ATTACHMENT_KINDS = frozenset({"image", "video", "audio", "file"})


@dataclass(frozen=True)
class Outgoing:
    recipient_id: str
    text: str
    attachment_type: str  # "" for text
    attachment_url: str
    human_agent_requested: bool
    request_id: str


@dataclass(frozen=True)
class Queued:
    message: Message
    job_id: uuid.UUID | None


def validate(out: Outgoing) -> None:
    if not out.recipient_id.strip():
        raise InvalidArgument.field("recipient_id", "required")
    if out.text and out.attachment_url:
        raise InvalidArgument.field("message", "give text or one attachment, not both")
    if not out.text and not out.attachment_url:
        raise InvalidArgument.field("message", "give text or one attachment")
    if out.text and len(out.text.encode()) > MAX_TEXT_BYTES:
        raise InvalidArgument.field("message.text", f"at most {MAX_TEXT_BYTES} bytes (UTF-8)")
    if out.attachment_url:
        if out.attachment_type not in ATTACHMENT_KINDS:
            raise InvalidArgument.field("message.attachment.type", "image, video, audio or file")
        parts = urlsplit(out.attachment_url)
        if parts.scheme != "https" or not parts.netloc:
            raise InvalidArgument.field(
                "message.attachment.payload.url", "a public https:// URL Instagram can fetch"
            )


async def last_inbound(
    session: AsyncSession, user_id: uuid.UUID, contact_id: uuid.UUID
) -> dt.datetime | None:
    """The customer's last message time (the window starts there)."""
    found: dt.datetime | None = await session.scalar(
        select(func.max(func.coalesce(Message.enviado_em, Message.criado_em))).where(
            Message.canal == CANAL,
            Message.usuario_id == user_id,
            Message.contato_id == contact_id,
            Message.direcao == "inbound",
        )
    )
    return found


async def send(deps: Deps, tx: AsyncSession, caller: Caller, out: Outgoing) -> Queued:
    """Checks the window, stores the message pending and enqueues its send, in `tx` (the
    caller's unit of work, which also holds the request id's idempotency slot)."""
    validate(out)
    tenant, user = caller.require_tenant(), caller.require_user()
    human = caller.role is not Role.SERVICE
    if out.human_agent_requested and not human:
        raise InvalidArgument.field("tag", "HUMAN_AGENT is for messages a person sends")
    conn = usable(await own_connection(tx, user))
    contact = await tx.scalar(
        select(Contact).where(
            Contact.instagram_igsid == out.recipient_id.strip(), Contact.deletado_em.is_(None)
        )
    )
    if contact is None:
        raise ConversationNotFound(
            "no Instagram conversation with this recipient",
            metadata={"recipient_id": out.recipient_id},
        )
    decision = decide(await last_inbound(tx, user, contact.id), deps.clock.now(), human=human)
    if not decision.allowed:
        raise MessagingWindowClosed(decision.why, metadata={"recipient_id": out.recipient_id})
    message = Message(
        organizacao_id=tenant,
        canal=CANAL,
        contato_id=contact.id,
        usuario_id=user,
        direcao="outbound",
        conteudo=out.text,
        tipo="text" if out.text else out.attachment_type,
        status="pending",
        metadata_={
            "sender_id": conn.instagram_user_id,
            "recipient_id": contact.instagram_igsid,
            "attachments": [{"type": out.attachment_type, "url": out.attachment_url}]
            if out.attachment_url
            else [],
            "image_url": out.attachment_url,
            "human": human,
            "tag": "HUMAN_AGENT" if decision.human_agent_tag else None,
            "source": "api",
            "conexao_id": str(conn.id),
        },
    )
    tx.add(message)
    await tx.flush()
    await tx.refresh(message)
    job_id = await enqueue(
        tx,
        tenant_id=tenant,
        operation=INSTAGRAM_SEND,
        payload={"message_id": str(message.id)},
        idempotency_key=f"{INSTAGRAM_SEND.name}:{message.id}",
        destino=contact.instagram_igsid or "",
    )
    await record_change(
        tx,
        tenant,
        "MESSAGE_STATUS",
        {
            "canal": CANAL,
            "connection_type": "instagram_direct",
            "id": str(message.id),
            "status": message.status,
            "direcao": "outbound",
            "contato_id": str(contact.id),
        },
        user_id=user,
    )
    return Queued(message, job_id)


async def send_job(deps: Deps, job: Job) -> None:
    """Sends one stored message; sent, or failed for good with the reason on the row."""
    tenant = job.tenant_id
    message_id = uuid.UUID(str(job.payload["message_id"]))
    with before_the_provider():
        async with deps.db.unit_of_work(tenant_service(tenant)) as tx:
            message = await tx.get(Message, message_id)
            if message is None or message.status not in _UNSENT:
                return  # already sent (its echo may have said so first) or removed
            conn = await own_connection(tx, message.usuario_id) if message.usuario_id else None
            meta = dict(message.metadata_ or {})
            inbound = (
                await last_inbound(tx, message.usuario_id, message.contato_id)
                if message.usuario_id and message.contato_id
                else None
            )
    try:
        conn = usable(conn)
        decision = decide(inbound, deps.clock.now(), human=bool(meta.get("human")))
        if not decision.allowed:
            raise MessagingWindowClosed(decision.why)
        sent = await _call(deps, conn, meta, message.conteudo or "", decision.human_agent_tag)
    except CircuitOpen:
        raise  # the worker postpones the job without spending the attempt: nothing failed yet
    except DomainError as exc:
        if not exc.retryable or job.attempt >= job.max_attempts:
            await _fail(deps, tenant, message_id, exc)
        raise
    now = deps.clock.now()
    async with deps.db.unit_of_work(tenant_service(tenant)) as tx:
        # The connection's row first, then the message's: the order the echo of this very
        # send takes them in (server/instagram/inbound.py), or the two deadlock.
        await tx.get(InstagramConnection, conn.id, with_for_update=True)
        row = await tx.get(Message, message_id, with_for_update=True)
        if row is None:
            return
        counted = row.status in _UNSENT  # else its echo adopted (and counted) it first
        row.external_id = row.external_id or sent
        row.status = "sent" if counted else row.status
        row.enviado_em = row.enviado_em or now
        tag = "HUMAN_AGENT" if decision.human_agent_tag else None
        row.metadata_ = {**(row.metadata_ or {}), "tag": tag}
        if counted:
            await tx.execute(
                update(InstagramConnection)
                .where(InstagramConnection.id == conn.id)
                .values(
                    total_mensagens_enviadas=func.coalesce(
                        InstagramConnection.total_mensagens_enviadas, 0
                    )
                    + 1,
                    ultima_mensagem_em=now,
                )
            )
        await _status(tx, row)


async def _call(
    deps: Deps, conn: InstagramConnection, meta: dict[str, object], text: str, human_agent: bool
) -> str:
    attachments = meta.get("attachments")
    kind = "image"
    if isinstance(attachments, list) and attachments and isinstance(attachments[0], dict):
        kind = str(attachments[0].get("type") or "image")
    try:
        sent = await client(deps).send(
            await refresh.keeper(deps).access_token(conn.organizacao_id, conn.id),
            conn.instagram_user_id,
            recipient_id=str(meta.get("recipient_id") or ""),
            text=text,
            image_url=str(meta.get("image_url") or ""),
            attachment_type=kind,
            human_agent=human_agent,
        )
    except ProviderAuthError as exc:
        if is_window_error(exc):
            raise MessagingWindowClosed("Instagram refused: outside the messaging window") from exc
        status = await break_on_auth_error(deps, conn.id, conn.organizacao_id, exc)
        raise dead_token_error(status) from exc
    except ProviderError as exc:
        if is_window_error(exc):
            raise MessagingWindowClosed("Instagram refused: outside the messaging window") from exc
        raise
    return sent.message_id


async def _fail(deps: Deps, tenant: uuid.UUID, message_id: uuid.UUID, exc: Exception) -> None:
    async with deps.db.unit_of_work(tenant_service(tenant)) as tx:
        await _mark_failed(tx, message_id, str(exc), getattr(exc, "reason", ""), _UNSENT)


async def dead_lettered(tx: AsyncSession, job: Job, error: str) -> None:
    """The worker gave up on the job: a message still pending (its last attempt timed out, or
    its worker was lost) is failed with the job's last error, in the dead-lettering `tx`."""
    message_id = uuid.UUID(str(job.payload["message_id"]))
    await _mark_failed(tx, message_id, error, "UNAVAILABLE", ("pending",))


async def _mark_failed(
    tx: AsyncSession,
    message_id: uuid.UUID,
    error: str,
    reason: str,
    from_statuses: tuple[str, ...],
) -> None:
    row = await tx.get(Message, message_id, with_for_update=True)
    if row is None or row.status not in from_statuses:
        return
    row.status = "failed"
    row.metadata_ = {**(row.metadata_ or {}), "erro": redact(error)[:300], "motivo": reason}
    await _status(tx, row)


async def _status(tx: AsyncSession, row: Message) -> None:
    await record_change(
        tx,
        row.organizacao_id,
        "MESSAGE_STATUS",
        {
            "canal": CANAL,
            "connection_type": "instagram_direct",
            "id": str(row.id),
            "status": row.status or "",
            "message_id": row.external_id or "",
        },
        user_id=row.usuario_id,
    )
