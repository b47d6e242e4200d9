"""The "whatsapp_send" job: one stored outbound message sent through WAHA (the worker guards
the call with the "waha" breaker) under the WhatsApp id it was stored with (message_ids.py, so
a repeated attempt is the same message), marked sent (sent.py) with the job completed in that
same transaction, or failed for good."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Message, WhatsAppSession
from server.auth.caller import Caller, Role
from server.errors import DomainError
from server.outbox import record_change
from server.resilience.jobs import Job
from server.security.redaction import redact
from server.whatsapp import status as st
from server.whatsapp.connection import CANAL, waha
from server.whatsapp.errors import SessionNotConnected
from server.whatsapp.message_ids import wa_message_key
from server.whatsapp.sent import record_sent

if TYPE_CHECKING:
    from server.bootstrap import Deps

# What an ack can move a pending message to when WAHA took it (status.ACK_STATUS).
_ACKED = frozenset({"sent", "delivered", "read"})


async def send_message(deps: Deps, job: Job) -> None:
    """Send one stored outbound message through WAHA; mark it sent, or failed for good."""
    caller = Caller(role=Role.SERVICE, tenant_id=job.tenant_id)
    message_id = uuid.UUID(str(job.payload["message_id"]))
    async with deps.db.unit_of_work(caller) as tx:
        # The message and its sender's live session in one join (one round trip).
        found = (
            await tx.execute(
                select(Message, WhatsAppSession)
                .outerjoin(
                    WhatsAppSession,
                    and_(
                        WhatsAppSession.usuario_id == Message.usuario_id,
                        WhatsAppSession.deletado_em.is_(None),
                    ),
                )
                .where(Message.id == message_id)
            )
        ).first()
        if found is None:
            return  # removed
        pending, session = found
        meta = dict(pending.metadata_ or {})
    if pending.status != "pending":
        # Already sent (a retried job), failed, or acked by WhatsApp while this job waited to
        # run again after a worker was lost: the ack proves WAHA took it, so record the send
        # without sending again.
        if pending.status in _ACKED and pending.enviado_em is None and session is not None:
            await _record(deps, caller, job, message_id, session.id, pending.external_id, None)
        return
    try:
        if session is None or session.status != st.CONNECTED:
            raise SessionNotConnected("the sender's WhatsApp session is not connected")
        client = await waha(deps)
        sent = await client.send_text(
            session.session_name,
            str(meta.get("chat_id")),
            pending.conteudo or "",
            reply_to=str(meta["reply_to"]) if meta.get("reply_to") else None,
            # The same id on every attempt: a repeat is the same message (message_ids.py).
            message_key=wa_message_key(message_id),
        )
    except DomainError as exc:
        if not exc.retryable or job.attempt >= job.max_attempts:
            await _mark_failed(deps, caller, message_id, exc)
        raise
    await _record(deps, caller, job, message_id, session.id, sent.id, sent.ack)


async def _record(
    deps: Deps,
    caller: Caller,
    job: Job,
    message_id: uuid.UUID,
    session_id: uuid.UUID,
    external_id: str | None,
    ack: int | None,
) -> None:
    # The session's counters, the message's result and its MESSAGE_STATUS change in one
    # statement (sent.py), and the job's completion in the same transaction: the result and
    # the job commit together, so a worker lost in between never sends the message again.
    async with deps.db.plain_unit_of_work(caller) as pg:
        await record_sent(
            pg,
            message_id=message_id,
            session_id=session_id,
            external_id=external_id,
            ack=ack,
            at=deps.clock.now(),
        )
        await job.complete_within(pg)


async def _mark_failed(deps: Deps, caller: Caller, message_id: uuid.UUID, exc: Exception) -> None:
    async with deps.db.unit_of_work(caller) as tx:
        message = await tx.get(Message, message_id, with_for_update=True)
        if message is None or message.status != "pending":
            return
        message.status = "failed"
        message.metadata_ = {**(message.metadata_ or {}), "erro": redact(str(exc))[:300]}
        await _publish_status(tx, message)


async def _publish_status(tx: AsyncSession, message: Message) -> None:
    await record_change(
        tx,
        message.organizacao_id,
        "MESSAGE_STATUS",
        {"canal": CANAL, "id": str(message.id), "status": message.status or ""},
        user_id=message.usuario_id,
    )
