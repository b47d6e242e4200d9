"""Senders WhatsApp identifies only by a hidden id (`...@lid`): their messages land on a
contact keyed by that id, and when WhatsApp reveals the phone (`_data.key.senderPn`) that
contact is merged into the phone's (its messages move, the id is kept on the phone's contact).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Contact, Message
from server.outbox import record_change
from server.outbox.payloads import contact_changed
from server.whatsapp.contacts import contact_for_phone
from server.whatsapp.views import phone_of_chat

LID_SUFFIX = "@lid"


def hidden_id(chat_id: str) -> str | None:
    """The `...@lid` id of a chat, or None for any other kind."""
    return chat_id if chat_id.endswith(LID_SUFFIX) and len(chat_id) <= 64 else None


def revealed_phone(payload: Mapping[str, Any]) -> str | None:
    """The E.164 phone WhatsApp sent along a hidden-id message, if any."""
    data = payload.get("_data")
    key = data.get("key") if isinstance(data, Mapping) else None
    alt = key.get("senderPn") if isinstance(key, Mapping) else None
    if not isinstance(alt, str):
        return None
    return phone_of_chat(alt.replace("@s.whatsapp.net", "@c.us"))


async def contact_for_sender(
    tx: AsyncSession,
    tenant: uuid.UUID,
    lid: str,
    phone: str | None,
    *,
    name: str | None,
    owner: uuid.UUID | None,
) -> uuid.UUID:
    """The contact of a hidden-id sender: the phone's when known (merging the id's contact
    into it), otherwise the one keyed by the id (created when there is none)."""
    by_lid = await tx.scalar(
        select(Contact).where(Contact.whatsapp_lid == lid, Contact.deletado_em.is_(None))
    )
    if phone is None:
        if by_lid is not None:
            return by_lid.id
        return await _create_for_lid(tx, tenant, lid, name=name, owner=owner)
    if by_lid is not None and by_lid.telefone == phone:
        return by_lid.id
    if by_lid is not None:
        # The id's contact was a stand-in for this phone: it steps aside before the phone's
        # contact takes the id (the id is unique among live contacts).
        by_lid.whatsapp_lid, by_lid.deletado_em = None, dt.datetime.now(dt.UTC)
        await tx.flush()
    merged_into = await contact_for_phone(tx, tenant, phone, name=name, owner=owner)
    await tx.execute(update(Contact).where(Contact.id == merged_into).values(whatsapp_lid=lid))
    if by_lid is not None:
        await tx.execute(
            update(Message).where(Message.contato_id == by_lid.id).values(contato_id=merged_into)
        )
        await record_change(
            tx,
            tenant,
            "CONTACT_CHANGED",
            {
                **contact_changed(
                    None, created=False, origem="whatsapp", contato_id=merged_into, telefone=phone
                ),
                "mesclado_de": str(by_lid.id),  # the hidden id's contact, now removed
            },
            user_id=owner,
        )
    return merged_into


async def _create_for_lid(
    tx: AsyncSession, tenant: uuid.UUID, lid: str, *, name: str | None, owner: uuid.UUID | None
) -> uuid.UUID:
    created = await tx.scalar(
        insert(Contact)
        .values(
            organizacao_id=tenant,
            whatsapp_lid=lid,
            nome=name or lid,
            origem="whatsapp",
            owner_id=owner,
        )
        .on_conflict_do_nothing(
            index_elements=["organizacao_id", "whatsapp_lid"],
            index_where=Contact.whatsapp_lid.is_not(None) & Contact.deletado_em.is_(None),
        )
        .returning(Contact.id)
    )
    if created is None:
        found = await tx.scalar(
            select(Contact.id).where(Contact.whatsapp_lid == lid, Contact.deletado_em.is_(None))
        )
        assert found is not None  # the conflict says it exists
        return found
    await record_change(
        tx,
        tenant,
        "CONTACT_CHANGED",
        contact_changed(
            None,
            created=True,
            origem="whatsapp",
            contato_id=created,
            nome=name or lid,
            owner_id=owner,
        ),
        user_id=owner,
    )
    return created
