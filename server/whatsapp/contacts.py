"""The CRM contact behind a WhatsApp phone number (found, or created with origem whatsapp)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from sqlalchemy import exists, false, select, true
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Contact
from server.outbox import record_change
from server.outbox.payloads import contact_changed
from server.outbox.record import record_change_plain


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
        await record_change(
            tx, tenant, "CONTACT_CHANGED", _created(created, phone, name, owner), user_id=owner
        )
        return created
    existing_id: uuid.UUID = found.id
    return existing_id


# contact_for_phone's statement in plain SQL, for a plain unit of work.
_CONTACT = """
WITH inserted AS (
  INSERT INTO contatos (id, organizacao_id, telefone, nome, origem, owner_id)
  VALUES ($1, $2, $3, $4, 'whatsapp', $5)
  ON CONFLICT (organizacao_id, telefone) WHERE telefone IS NOT NULL AND deletado_em IS NULL
  DO NOTHING
  RETURNING id, true AS created
)
SELECT id, created FROM inserted
UNION ALL
SELECT id, false FROM contatos
 WHERE telefone = $3 AND deletado_em IS NULL AND NOT EXISTS (SELECT 1 FROM inserted)
"""
_LIVE = "SELECT id FROM contatos WHERE telefone = $1 AND deletado_em IS NULL"


async def contact_for_phone_plain(
    conn: asyncpg.Connection,
    tenant: uuid.UUID,
    phone: str,
    *,
    name: str | None,
    owner: uuid.UUID | None,
) -> uuid.UUID:
    """`contact_for_phone` on the asyncpg connection of a plain unit of work."""
    found = await conn.fetchrow(_CONTACT, uuid.uuid4(), tenant, phone, name or phone, owner)
    if found is None:
        # Committed by another transaction after this statement's snapshot (see above).
        again: uuid.UUID | None = await conn.fetchval(_LIVE, phone)
        assert again is not None  # the conflict says it exists
        return again
    contato_id: uuid.UUID = found["id"]
    if found["created"]:
        await record_change_plain(
            conn,
            tenant,
            "CONTACT_CHANGED",
            _created(contato_id, phone, name, owner),
            user_id=owner,
        )
    return contato_id


def _created(
    contato_id: uuid.UUID, phone: str, name: str | None, owner: uuid.UUID | None
) -> dict[str, Any]:
    """The CONTACT_CHANGED payload of a contact both versions above just created."""
    return contact_changed(
        None,
        created=True,
        origem="whatsapp",
        contato_id=contato_id,
        nome=name or phone,
        telefone=phone,
        owner_id=owner,
    )
