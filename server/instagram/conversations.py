"""The caller's Instagram conversations (one per contact, most recent first, with the window
state) and the messages of one, newest first, both paged by keyset."""

from __future__ import annotations

import uuid

from renove.conexoes.v1 import instagram_service_pb2 as pb
from sqlalchemy import and_, desc, func, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.sql.elements import ColumnElement

from db.models import Contact, Message
from server.auth.caller import Caller
from server.bootstrap import Deps
from server.instagram.errors import ConversationNotFound
from server.instagram.views import CANAL, conversation_proto, message_proto
from server.paging import KeyKind, keyset_after, keyset_page, page_size
from server.protoconv import parse_uuid

_MESSAGE_TIME = func.coalesce(Message.enviado_em, Message.criado_em)
# Both listings page by (time, id), newest first.
_CURSOR: tuple[tuple[str, KeyKind], ...] = (("t", "time"), ("id", "uuid"))


def _mine(user: uuid.UUID) -> list[ColumnElement[bool]]:
    return [Message.canal == CANAL, Message.usuario_id == user, Message.contato_id.is_not(None)]


async def list_conversations(
    deps: Deps, caller: Caller, *, size: int, token: str, only_unread: bool
) -> pb.ListInstagramConversationsResponse:
    user = caller.require_user()
    size = min(page_size(size), 200)
    unread = func.count().filter(and_(Message.direcao == "inbound", Message.status == "received"))
    summary = (
        select(
            Message.contato_id.label("contato_id"),
            func.max(_MESSAGE_TIME).label("ultima"),
            func.max(_MESSAGE_TIME).filter(Message.direcao == "inbound").label("ultima_inbound"),
            unread.label("nao_lidas"),
        )
        .where(*_mine(user))
        .group_by(Message.contato_id)
        .subquery()
    )
    query = select(summary).order_by(desc(summary.c.ultima), desc(summary.c.contato_id))
    if only_unread:
        query = query.where(summary.c.nao_lidas > 0)
    after = keyset_after(token, _CURSOR, (summary.c.ultima, summary.c.contato_id), descending=True)
    if after is not None:
        query = query.where(after)
    now = deps.clock.now()
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
                .order_by(Message.contato_id, desc(_MESSAGE_TIME), desc(Message.id))
                .ext(distinct_on(Message.contato_id))
            )
        }
    return pb.ListInstagramConversationsResponse(
        conversations=[
            conversation_proto(
                contacts[r.contato_id], latest.get(r.contato_id), r.ultima_inbound, r.nao_lidas, now
            )
            for r in page
            if r.contato_id in contacts
        ],
        next_page_token=next_token,
    )


async def list_messages(
    deps: Deps, caller: Caller, *, conversation_id: str, size: int, token: str
) -> pb.ListInstagramMessagesResponse:
    user = caller.require_user()
    contact_id = parse_uuid(conversation_id, "id")
    size = min(page_size(size), 500)
    query = (
        select(Message)
        .where(*_mine(user), Message.contato_id == contact_id)
        .order_by(desc(_MESSAGE_TIME), desc(Message.id))
    )
    after = keyset_after(token, _CURSOR, (_MESSAGE_TIME, Message.id), descending=True)
    if after is not None:
        query = query.where(after)
    now = deps.clock.now()
    async with deps.db.unit_of_work(caller) as tx:
        contact = await tx.get(Contact, contact_id)
        summary = (
            await tx.execute(
                select(
                    func.max(_MESSAGE_TIME).filter(Message.direcao == "inbound"),
                    func.count().filter(
                        and_(Message.direcao == "inbound", Message.status == "received")
                    ),
                ).where(*_mine(user), Message.contato_id == contact_id)
            )
        ).one()
        rows = list(await tx.scalars(query.limit(size + 1)))
        latest = await tx.scalar(
            select(Message)
            .where(*_mine(user), Message.contato_id == contact_id)
            .order_by(desc(_MESSAGE_TIME), desc(Message.id))
            .limit(1)
        )
    if contact is None or latest is None:
        raise ConversationNotFound(
            "no Instagram conversation with this id", metadata={"id": str(contact_id)}
        )
    page, next_token = keyset_page(
        rows, size, lambda m: {"t": (m.enviado_em or m.criado_em).isoformat(), "id": str(m.id)}
    )
    return pb.ListInstagramMessagesResponse(
        conversation=conversation_proto(contact, latest, summary[0], int(summary[1] or 0), now),
        messages=[message_proto(m) for m in page],
        next_page_token=next_token,
    )
