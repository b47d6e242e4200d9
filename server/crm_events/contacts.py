"""The contact mirror a pipeline event keeps current: the CRM core's contact id, with the name,
e-mail, phone (E.164) and city the event carries. Created on first sight; a field the event
leaves empty keeps what the mirror has."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import phonenumbers
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Contact


@dataclass(frozen=True)
class ContactFields:
    nome: str = ""
    email: str = ""
    telefone: str = ""
    cidade: str = ""
    origem: str = ""


def e164(value: str, region: str = "BR") -> str:
    """`+5511987654321`, or "" when the text is not a valid number."""
    if not value.strip():
        return ""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_valid_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


async def upsert_contact(
    session: AsyncSession, tenant_id: uuid.UUID, contato_id: uuid.UUID, fields: ContactFields
) -> Contact:
    phone = e164(fields.telefone)
    if phone:
        # Another live contact holds this phone (one per phone): keep it there.
        holder = await session.scalar(
            select(Contact.id).where(
                Contact.telefone == phone, Contact.deletado_em.is_(None), Contact.id != contato_id
            )
        )
        if holder is not None:
            phone = ""
    given = {
        "nome": fields.nome.strip()[:255],
        "email": fields.email.strip().lower()[:255],
        "telefone": phone,
        "cidade": fields.cidade.strip()[:255],
    }
    values = {k: v for k, v in given.items() if v}
    await session.execute(
        insert(Contact)
        .values(
            id=contato_id,
            organizacao_id=tenant_id,
            origem=fields.origem[:50] or None,
            **values,
        )
        .on_conflict_do_update(
            index_elements=[Contact.id],
            set_={**values, "atualizado_em": func.now()} if values else {"id": contato_id},
        )
    )
    contact = await session.get(Contact, contato_id, populate_existing=True)
    assert contact is not None
    return contact
