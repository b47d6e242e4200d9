"""WhatsApp messages the caller sends and reads: the send RPC (a queued job) and the lists."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import and_, desc, func, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from db.models import Contact, Message
from server.auth.caller import Caller
from server.errors import InvalidArgument
from server.outbox import record_change
from server.paging import keyset_after, keyset_page, page_size
from server.protoconv import parse_uuid
from server.resilience.jobs import enqueue
from server.resilience.operations import WHATSAPP_SEND
from server.whatsapp import status as st
from server.whatsapp.connection import CANAL, own_row
from server.whatsapp.contacts import contact_for_phone
from server.whatsapp.errors import ContactNotFound, SessionNotConnected
from server.whatsapp.message_ids import serialized_id, wa_message_key
from server.whatsapp.views import chat_id_of, chat_of_phone, phone_of_chat

if TYPE_CHECKING:
    from server.bootstrap import Deps

MAX_TEXT = 65_536  # WhatsApp's own limit on a text message


@dataclass(frozen=True)
class Outgoing:
    """A text to send: to a CRM contact (`contato_id`), a phone or chat id (`to`), or both."""

    text: str
    to: str = ""
    contato_id: str = ""
    reply_to: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class Conversation:
    contato_id: uuid.UUID
    contact: Contact | None
    last: Message | None
    last_at: dt.datetime
    unread: int


async def _recipient(
    tx: AsyncSession, tenant: uuid.UUID, user: uuid.UUID, request: Outgoing
) -> tuple[uuid.UUID, str]:
    chat = chat_id_of(request.to, "to") if request.to else None
    if request.contato_id:
        contact = await tx.get(Contact, parse_uuid(request.contato_id, "contato_id"))
        if contact is None or contact.deletado_em is not None:
            raise ContactNotFound("contact not found", metadata={"contato_id": request.contato_id})
        if not contact.telefone:
            raise InvalidArgument.field("contato_id", "the contact has no phone number")
        contact_chat = chat_of_phone(contact.telefone)
        if chat is not None and chat != contact_chat:
            raise InvalidArgument.field("to", "does not match the contact's phone number")
        return contact.id, contact_chat
    if chat is None:
        raise InvalidArgument.field("to", "give a recipient: contato_id or to")
    phone = phone_of_chat(chat)
    assert phone is not None  # chat_id_of accepts only a person's chat id
    return await contact_for_phone(tx, tenant, phone, name=None, owner=user), chat


# Called inside send's transaction with what it stored (the RPC stores its answer there).
BeforeCommit = Callable[[AsyncSession, Message, uuid.UUID | None], Awaitable[None]]


async def send(
    deps: Deps, caller: Caller, request: Outgoing, *, before_commit: BeforeCommit | None = None
) -> tuple[Message, uuid.UUID | None]:
    """Stores the outbound message (pending) and enqueues its send, in one transaction."""
    tenant, user = caller.require_tenant(), caller.require_user()
    text = request.text
    if not text.strip():
        raise InvalidArgument.field("text", "must not be empty")
    if len(text) > MAX_TEXT:
        raise InvalidArgument.field("text", f"at most {MAX_TEXT} characters")
    async with deps.db.unit_of_work(caller) as tx:
        session = await own_row(tx, caller)
        if session is None or session.status != st.CONNECTED:
            raise SessionNotConnected("connect WhatsApp before sending messages")
        contato_id, chat = await _recipient(tx, tenant, user, request)
        message_id = uuid.uuid4()
        message = Message(
            id=message_id,
            external_id=serialized_id(chat, wa_message_key(message_id)),
            organizacao_id=tenant,
            canal=CANAL,
            contato_id=contato_id,
            usuario_id=user,
            direcao="outbound",
            conteudo=text,
            tipo="text",
            status="pending",
            metadata_={
                "chat_id": chat,
                "to": chat,
                "from": chat_of_phone(session.phone_number) if session.phone_number else "",
                "type": "chat",
                "reply_to": request.reply_to or None,
                "source": "api",
            },
        )
        tx.add(message)
        await tx.flush()
        await tx.refresh(message)
        job_id = await enqueue(
            tx,
            tenant_id=tenant,
            operation=WHATSAPP_SEND,
            payload={"message_id": str(message.id)},
            idempotency_key=f"{WHATSAPP_SEND.name}:{message.id}",
            destino=chat,
        )
        await record_change(
            tx,
            tenant,
            "MESSAGE_STATUS",
            {
                "canal": CANAL,
                "id": str(message.id),
                "status": message.status,
                "direcao": "outbound",
                "contato_id": str(contato_id),
            },
            user_id=user,
        )
        if before_commit is not None:
            await before_commit(tx, message, job_id)
        return message, job_id


def _mine(user: uuid.UUID) -> list[ColumnElement[bool]]:
    return [Message.canal == CANAL, Message.usuario_id == user, Message.contato_id.is_not(None)]


async def list_conversations(
    deps: Deps, caller: Caller, *, only_unread: bool, size: int, token: str
) -> tuple[list[Conversation], str]:
    """The caller's WhatsApp conversations, latest first, with their last message."""
    user = caller.require_user()
    size = min(page_size(size), 200)
    unread = func.count().filter(and_(Message.direcao == "inbound", Message.status == "received"))
    summary = (
        select(
            Message.contato_id.label("contato_id"),
            func.max(Message.criado_em).label("ultima"),
            unread.label("nao_lidas"),
        )
        .where(*_mine(user))
        .group_by(Message.contato_id)
        .subquery()
    )
    query = select(summary).order_by(desc(summary.c.ultima), desc(summary.c.contato_id))
    if only_unread:
        query = query.where(summary.c.nao_lidas > 0)
    after = keyset_after(
        token,
        (("t", "time"), ("id", "uuid")),
        (summary.c.ultima, summary.c.contato_id),
        descending=True,
    )
    if after is not None:
        query = query.where(after)
    async with deps.db.unit_of_work(caller) as tx:
        rows = (await tx.execute(query.limit(size + 1))).all()
        page, next_token = keyset_page(
            rows, size, lambda r: {"t": r.ultima.isoformat(), "id": str(r.contato_id)}
        )
        ids = [r.contato_id for r in page]
        contacts = {c.id: c for c in await tx.scalars(select(Contact).where(Contact.id.in_(ids)))}
        latest = {
            m.contato_id: m
            for m in await tx.scalars(
                select(Message)
                .where(*_mine(user), Message.contato_id.in_(ids))
                .order_by(Message.contato_id, desc(Message.criado_em), desc(Message.id))
                .ext(distinct_on(Message.contato_id))
            )
        }
    conversations = [
        Conversation(
            r.contato_id,
            contacts.get(r.contato_id),
            latest.get(r.contato_id),
            r.ultima,
            r.nao_lidas,
        )
        for r in page
    ]
    return conversations, next_token


async def list_messages(
    deps: Deps, caller: Caller, contato_id_text: str, *, size: int, token: str
) -> tuple[list[Message], str]:
    """The caller's messages with one contact, newest first."""
    user = caller.require_user()
    contato_id = parse_uuid(contato_id_text, "contato_id")
    size = page_size(size)
    after = keyset_after(
        token,
        (("t", "time"), ("id", "uuid")),
        (Message.criado_em, Message.id),
        descending=True,
    )
    query = (
        select(Message)
        .where(*_mine(user), Message.contato_id == contato_id)
        .order_by(desc(Message.criado_em), desc(Message.id))
    )
    if after is not None:
        query = query.where(after)
    async with deps.db.unit_of_work(caller) as tx:
        rows = list(await tx.scalars(query.limit(size + 1)))
    if not rows and after is None:
        raise ContactNotFound(
            "no WhatsApp conversation with this contact", metadata={"contato_id": str(contato_id)}
        )
    return keyset_page(rows, size, lambda m: {"t": m.criado_em.isoformat(), "id": str(m.id)})
