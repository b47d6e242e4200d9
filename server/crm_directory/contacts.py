"""The contact mirror: the CRM core's contacts, keyed by the core's id, newest write wins.

`upsert_contact` and `delete_contact` take plain values and run in the caller's transaction
(the directory's RPCs, PublishPipelineEvent). Ordering is by the core's `updated_at`, kept in
`contatos.core_atualizado_em`: a write older than (or as old as) the last one applied changes
nothing, and a delete leaves a tombstone so an older upsert arriving after it stays ignored
(a delete wins a tie). A contact this service created itself (from a lead or a message) has
no stamp yet; the core's first write about it applies.

Only the fields the core owns are written (name, owner, e-mails, phones, address, consent;
consent only when the write states it: absent keeps the stored value);
what this service learned itself (company, job title, tags, custom answers) is kept.
`email`/`telefone` hold the first e-mail and the first phone not already used by another
live contact of the tenant (one live contact per phone: inbound messages resolve by it).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import phonenumbers
from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Contact, User
from server.errors import FieldViolation, InvalidArgument

ORIGIN = "crm"
MAX_VALUES = 20  # e-mails or phones per contact


@dataclass(frozen=True)
class ContactValues:
    """A contact as the core sends it. `updated_at` must be timezone-aware."""

    id: uuid.UUID
    updated_at: dt.datetime
    nome: str | None = None
    owner_id: uuid.UUID | None = None
    emails: Sequence[str] = field(default_factory=tuple)
    telefones: Sequence[str] = field(default_factory=tuple)
    cidade: str | None = None
    estado: str | None = None
    cep: str | None = None
    pais: str | None = None  # ISO 3166-1 alpha-2
    consentimento: bool | None = None  # marketing consent; None = not stated


@dataclass(frozen=True)
class ContactWrite:
    applied: bool  # False: an equal or newer write was already applied (nothing changed)
    created: bool = False
    consent_withdrawn: bool = False  # consent went from true to false (or the contact left)


def normalize_email(value: str) -> str | None:
    value = value.strip().lower()
    ok = 3 <= len(value) <= 255 and value.count("@") == 1 and " " not in value
    return value if ok and all(value.split("@")) else None


def normalize_phone(value: str, region: str = "BR") -> str | None:
    """E.164 (`+5511987654321`); None when it is not a valid number."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _text(value: str | None, limit: int) -> str | None:
    value = (value or "").strip()
    return value[:limit] if value else None


def normalized(
    values: ContactValues, prefix: str = ""
) -> tuple[ContactValues, list[FieldViolation]]:
    """The values cleaned (trimmed, e-mails lower-cased, phones E.164, duplicates dropped)
    and every problem found, as field violations named under `prefix`."""
    problems: list[FieldViolation] = []
    if values.updated_at.tzinfo is None:
        problems.append(FieldViolation(f"{prefix}updated_at", "required (a timestamp)"))
    emails: list[str] = []
    for i, raw in enumerate(values.emails):
        email = normalize_email(raw)
        if email is None:
            problems.append(FieldViolation(f"{prefix}emails[{i}]", "not an e-mail address"))
        elif email not in emails:
            emails.append(email)
    phones: list[str] = []
    for i, raw in enumerate(values.telefones):
        phone = normalize_phone(raw)
        if phone is None:
            problems.append(FieldViolation(f"{prefix}telefones[{i}]", "not a valid phone number"))
        elif phone not in phones:
            phones.append(phone)
    for name, items in (("emails", emails), ("telefones", phones)):
        if len(items) > MAX_VALUES:
            problems.append(FieldViolation(f"{prefix}{name}", f"at most {MAX_VALUES}"))
    pais = _text(values.pais, 255)
    if pais is not None and (len(pais) != 2 or not pais.isalpha()):
        problems.append(FieldViolation(f"{prefix}pais", "ISO 3166-1 alpha-2 (e.g. BR)"))
    clean = replace(
        values,
        nome=_text(values.nome, 255),
        emails=tuple(emails),
        telefones=tuple(phones),
        cidade=_text(values.cidade, 255),
        estado=_text(values.estado, 100),
        cep=_text(values.cep, 20),
        pais=pais.upper() if pais else None,
    )
    return clean, problems


def _newer(incoming: ColumnElement[dt.datetime]) -> ColumnElement[bool]:
    stamp = Contact.__table__.c.core_atualizado_em
    return or_(stamp.is_(None), stamp < incoming)


async def upsert_contact(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    values: ContactValues,
    *,
    prefix: str = "",
    revive: bool = True,
) -> ContactWrite:
    """Creates or updates the contact `values.id` unless a newer write was applied.

    `revive=False` (a pipeline event's mirror) keeps a deletion: only the directory itself
    brings a deleted contact back.

    Raises:
        InvalidArgument: bad e-mails/phones/country, or an owner the directory does not know
            (field names under `prefix`, e.g. "contacts[2].").
    """
    clean, problems = normalized(values, prefix)
    if clean.owner_id is not None:
        known = await session.scalar(select(User.id).where(User.id == clean.owner_id))
        if known is None:
            problems.append(FieldViolation(f"{prefix}owner_id", "no such user in the directory"))
    if problems:
        raise InvalidArgument("invalid contact", problems)
    phones = bindparam("phones", list(clean.telefones), type_=ARRAY(Text()))
    other = Contact.__table__.alias("other")
    candidate = func.unnest(phones).table_valued("p", with_ordinality="i").render_derived("t")
    free_phone = (
        select(candidate.c.p)
        .where(
            ~exists().where(
                and_(
                    other.c.telefone == candidate.c.p,
                    other.c.deletado_em.is_(None),
                    other.c.id != clean.id,
                )
            )
        )
        .order_by(candidate.c.i)
        .limit(1)
        .scalar_subquery()
    )
    row = {
        "nome": clean.nome,
        "email": clean.emails[0] if clean.emails else None,
        "telefone": free_phone,
        "emails": list(clean.emails),
        "telefones": list(clean.telefones),
        "cidade": clean.cidade,
        "estado": clean.estado,
        "cep": clean.cep,
        "pais": clean.pais,
        "consentimento": clean.consentimento,
        "owner_id": clean.owner_id,
        "core_atualizado_em": clean.updated_at,
    }
    # A subquery in RETURNING reads the statement's snapshot: the row as it was before.
    before = select(Contact.consentimento).where(Contact.id == clean.id).scalar_subquery()
    new = insert(Contact).values(id=clean.id, organizacao_id=tenant_id, origem=ORIGIN, **row)
    kept = Contact.__table__.c.consentimento
    statement = new.on_conflict_do_update(
        index_elements=[Contact.id],
        # Consent not stated (None) keeps what was stored: only an explicit false withdraws.
        set_={
            **row,
            "telefone": free_phone,
            "deletado_em": None if revive else Contact.__table__.c.deletado_em,
            "consentimento": func.coalesce(new.excluded.consentimento, kept),
        },
        where=_newer(new.excluded.core_atualizado_em),
    ).returning(literal_column("(xmax = 0)").label("created"), before.label("consent_before"))
    result = (await session.execute(statement)).one_or_none()
    if result is None:
        return ContactWrite(applied=False)
    withdrawn = result.consent_before is True and clean.consentimento is False
    return ContactWrite(applied=True, created=bool(result.created), consent_withdrawn=withdrawn)


async def delete_contact(
    session: AsyncSession, tenant_id: uuid.UUID, contact_id: uuid.UUID, updated_at: dt.datetime
) -> ContactWrite:
    """Marks the contact deleted as of the core's `updated_at` (a tombstone if unknown), unless
    a newer write was applied. Its messages and opportunities stay."""
    if updated_at.tzinfo is None:
        raise InvalidArgument.field("updated_at", "required (a timestamp)")
    stamp = Contact.__table__.c.core_atualizado_em
    before = select(Contact.consentimento).where(Contact.id == contact_id).scalar_subquery()
    new = insert(Contact).values(
        id=contact_id,
        organizacao_id=tenant_id,
        origem=ORIGIN,
        core_atualizado_em=updated_at,
        deletado_em=func.now(),
    )
    statement = new.on_conflict_do_update(
        index_elements=[Contact.id],
        set_={"deletado_em": func.now(), "core_atualizado_em": updated_at},
        where=or_(stamp.is_(None), stamp <= new.excluded.core_atualizado_em),
    ).returning(before.label("consent_before"))
    result = (await session.execute(statement)).one_or_none()
    if result is None:
        return ContactWrite(applied=False)
    return ContactWrite(applied=True, consent_withdrawn=result.consent_before is True)
