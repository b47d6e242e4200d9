"""The CRM contact behind a WhatsApp phone number (found, or created with origem whatsapp)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import exists, false, select, true
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
    # One round trip for both cases: the insert (nothing on conflict) and, when it inserted
    # nothing, the live contact it conflicted with, read in the same statement.
    inserted = (
        insert(Contact)
        .values(
            id=uuid.uuid4(),  # given: Python-side column defaults are not sure inside a CTE
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
        .returning(Contact.id, true().label("created"))
        .cte("inserted")
    )
    existing = select(Contact.id, false().label("created")).where(
        Contact.telefone == phone,
        Contact.deletado_em.is_(None),
        ~exists(select(inserted.c.id)),
    )
    found = (
        await tx.execute(select(inserted.c.id, inserted.c.created).union_all(existing))
    ).first()
    if found is None:
        # The conflicting row was committed by another transaction after this statement's
        # snapshot was taken: read it with a fresh one.
        again = await tx.scalar(
            select(Contact.id).where(Contact.telefone == phone, Contact.deletado_em.is_(None))
        )
        assert again is not None  # the conflict says it exists
        return again
    created: uuid.UUID | None = found.id if found.created else None
    if created is not None:
        change = new_contact_change(created, phone, name, owner)
        await record_change(tx, tenant, "CONTACT_CHANGED", change, user_id=owner)
        return created
    existing_id: uuid.UUID = found.id
    return existing_id


def new_contact_change(
    contato_id: uuid.UUID, phone: str, name: str | None, owner: uuid.UUID | None
) -> dict[str, Any]:
    """The CONTACT_CHANGED payload of a contact just created for a phone (here, and by
    received.py's store)."""
    return contact_changed(
        None,
        created=True,
        origem="whatsapp",
        contato_id=contato_id,
        nome=name or phone,
        telefone=phone,
        owner_id=owner,
    )
