"""The CRM contact behind a WhatsApp phone number (found, or created with origem whatsapp)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Contact
from server.outbox import record_change
from server.outbox.payloads import contact_changed


async def contact_for_phone(
    tx: AsyncSession,
    tenant: uuid.UUID,
    phone: str,
    *,
    name: str | None,
    owner: uuid.UUID | None,
) -> uuid.UUID:
    """The live contact with this E.164 phone, created (origem whatsapp) when there is none."""
    created = await tx.scalar(
        insert(Contact)
        .values(
            organizacao_id=tenant,
            telefone=phone,
            nome=name or phone,
            origem="whatsapp",
            owner_id=owner,
        )
        .on_conflict_do_nothing(
            index_elements=["organizacao_id", "telefone"],
            index_where=Contact.telefone.is_not(None) & Contact.deletado_em.is_(None),
        )
        .returning(Contact.id)
    )
    if created is not None:
        await record_change(
            tx,
            tenant,
            "CONTACT_CHANGED",
            contact_changed(
                None,
                created=True,
                origem="whatsapp",
                contato_id=created,
                nome=name or phone,
                telefone=phone,
                owner_id=owner,
            ),
            user_id=owner,
        )
        return created
    found = await tx.scalar(
        select(Contact.id).where(Contact.telefone == phone, Contact.deletado_em.is_(None))
    )
    assert found is not None  # the conflict says it exists
    return found
