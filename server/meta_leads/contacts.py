"""Lead answers -> CRM contact fields: mapping, phone (E.164, region BR) and e-mail
normalisation, and finding the contact by e-mail, then phone, or creating it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import phonenumbers
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Contact
from server.providers.meta_graph import LeadData

ORIGIN = "meta_lead_ads"


@dataclass(frozen=True)
class MappedLead:
    nome: str | None
    email: str | None
    telefone: str | None
    empresa: str | None
    cargo: str | None
    cidade: str | None
    custom: dict[str, str]


def normalize_email(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    return value if "@" in value and " " not in value and len(value) <= 255 else None


def normalize_phone(value: str | None, region: str = "BR") -> str | None:
    """E.164 (`+5511987654321`); None when it is not a valid number."""
    if not value:
        return None
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def map_fields(lead: LeadData, mapping: Mapping[str, str]) -> MappedLead:
    values: dict[str, str] = {}
    custom: dict[str, str] = {}
    for key, target in mapping.items():
        answer = ", ".join(v for v in lead.field_data.get(key, ()) if v).strip()
        if not answer:
            continue
        if target.startswith("custom:"):
            custom[target.removeprefix("custom:")] = answer
        else:
            values[target] = answer[:255]
    raw_phone = values.get("telefone")
    phone = normalize_phone(raw_phone)
    if raw_phone and phone is None:
        custom["telefone_original"] = raw_phone
    return MappedLead(
        nome=values.get("nome"),
        email=normalize_email(values.get("email")),
        telefone=phone,
        empresa=values.get("empresa"),
        cargo=values.get("cargo"),
        cidade=values.get("cidade"),
        custom=custom,
    )


async def find_contact(session: AsyncSession, data: MappedLead) -> Contact | None:
    clauses = []
    if data.email:
        clauses.append(func.lower(Contact.email) == data.email)
    if data.telefone:
        clauses.append(Contact.telefone == data.telefone)
    if not clauses:
        return None
    rows = list(
        await session.scalars(
            select(Contact)
            .where(Contact.deletado_em.is_(None), or_(*clauses))
            .order_by(Contact.criado_em)
        )
    )
    # E-mail first, then phone (the spec's order).
    by_email = next((c for c in rows if data.email and (c.email or "").lower() == data.email), None)
    return by_email or (rows[0] if rows else None)


async def upsert_contact(
    session: AsyncSession,
    tenant: uuid.UUID,
    data: MappedLead,
    tags: list[str],
    owner: uuid.UUID | None,
    *,
    known: Contact | None,
) -> Contact:
    """Creates the lead's contact, or fills what `known` (find_contact's answer, read earlier
    in this transaction) lacks."""
    contact = known
    if contact is None:
        contact = Contact(
            organizacao_id=tenant,
            nome=data.nome,
            email=data.email,
            telefone=data.telefone,
            empresa=data.empresa,
            cargo=data.cargo,
            cidade=data.cidade,
            campos_customizados=dict(data.custom),
            tags=list(tags),
            origem=ORIGIN,
            owner_id=owner,
        )
        session.add(contact)
        await session.flush()
        return contact
    # Fill what the contact lacks; never overwrite what the CRM already knows.
    for name in ("nome", "email", "empresa", "cargo", "cidade"):
        if getattr(contact, name) in (None, "") and getattr(data, name):
            setattr(contact, name, getattr(data, name))
    if contact.telefone is None and data.telefone:
        taken = await session.scalar(select(Contact.id).where(Contact.telefone == data.telefone))
        if taken is None:
            contact.telefone = data.telefone
    contact.campos_customizados = {**data.custom, **(contact.campos_customizados or {})}
    contact.tags = list(dict.fromkeys([*(contact.tags or []), *tags]))
    contact.owner_id = contact.owner_id or owner
    await session.flush()
    return contact
