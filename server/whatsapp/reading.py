"""Marking a conversation read: its received messages become `read` here (`nao_lidas` goes
down) and WAHA is told (`sendSeen`), so the phone and the sender see it read too."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import desc, select, update

from db.models import Message
from server.auth.caller import Caller
from server.protoconv import parse_uuid
from server.providers.errors import ProviderError
from server.whatsapp import status as st
from server.whatsapp.connection import CANAL, own_row, waha
from server.whatsapp.errors import ContactNotFound

if TYPE_CHECKING:
    from server.bootstrap import Deps

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MarkedRead:
    marked: int  # messages that were unread
    told_whatsapp: bool  # WAHA accepted the sendSeen


async def mark_read(deps: Deps, caller: Caller, contato_id_text: str) -> MarkedRead:
    """Marks the caller's conversation with a contact read.

    Raises:
        ContactNotFound: the caller has no WhatsApp conversation with that contact.
    """
    user = caller.require_user()
    contato_id = parse_uuid(contato_id_text, "contato_id")
    mine = (Message.canal == CANAL, Message.usuario_id == user, Message.contato_id == contato_id)
    async with deps.db.unit_of_work(caller) as tx:
        last_inbound = await tx.scalar(
            select(Message)
            .where(*mine, Message.direcao == "inbound")
            .order_by(desc(Message.criado_em))
            .limit(1)
        )
        if last_inbound is None and not await tx.scalar(select(Message.id).where(*mine).limit(1)):
            raise ContactNotFound(
                "no conversation with this contact", metadata={"contato_id": contato_id_text}
            )
        unread = list(
            await tx.scalars(
                update(Message)
                .where(*mine, Message.direcao == "inbound", Message.status == "received")
                .values(status="read")
                .returning(Message.external_id)
            )
        )
        session = await own_row(tx, caller)
    chat_id = str((last_inbound.metadata_ or {}).get("chat_id") or "") if last_inbound else ""
    if not chat_id or session is None or session.status != st.CONNECTED:
        return MarkedRead(len(unread), False)
    try:
        client = await waha(deps)
        async with deps.breakers.guard("waha"):
            await client.send_seen(session.session_name, chat_id, [i for i in unread if i])
    except ProviderError as exc:
        # Read here already; the phone catches up when the person opens the chat there.
        _log.info("sendSeen failed for %s: %r", session.session_name, exc)
        return MarkedRead(len(unread), False)
    return MarkedRead(len(unread), True)
