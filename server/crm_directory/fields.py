"""The CRM fields a Lead Ads question may be mapped to: the standard contact fields and the
core's custom fields (`campos_customizados_crm`, keyed by the core's id, ordered by its
`updated_at`; a mapping names one `custom:<id>`)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import CrmCustomField
from db.models.crm_link import CUSTOM_FIELD_TYPES
from server.errors import FieldViolation

FIELD_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CUSTOM_PREFIX = "custom:"


@dataclass(frozen=True)
class FieldValues:
    id: str
    updated_at: dt.datetime
    rotulo: str
    tipo: str  # one of CUSTOM_FIELD_TYPES


@dataclass(frozen=True)
class MappableField:
    target: str  # "nome" ... or "custom:<id>"
    rotulo: str
    tipo: str
    custom: bool


# The contact fields a mapping may fill, in the order the mapping screen shows them.
STANDARD_FIELDS: tuple[MappableField, ...] = (
    MappableField("nome", "Nome", "text", False),
    MappableField("email", "E-mail", "email", False),
    MappableField("telefone", "Telefone", "phone", False),
    MappableField("empresa", "Empresa", "text", False),
    MappableField("cargo", "Cargo", "text", False),
    MappableField("cidade", "Cidade", "text", False),
)


def problems_of(values: FieldValues, prefix: str = "") -> list[FieldViolation]:
    problems = []
    if not FIELD_ID.match(values.id):
        problems.append(FieldViolation(f"{prefix}id", "1-64 letters, digits, '_' or '-'"))
    if not values.rotulo.strip():
        problems.append(FieldViolation(f"{prefix}rotulo", "required"))
    if values.tipo not in CUSTOM_FIELD_TYPES:
        problems.append(FieldViolation(f"{prefix}tipo", "required"))
    if values.updated_at.tzinfo is None:
        problems.append(FieldViolation(f"{prefix}updated_at", "required (a timestamp)"))
    return problems


async def upsert_field(session: AsyncSession, tenant_id: uuid.UUID, values: FieldValues) -> bool:
    row = {
        "rotulo": values.rotulo.strip()[:255],
        "tipo": values.tipo,
        "core_atualizado_em": values.updated_at,
    }
    new = insert(CrmCustomField).values(organizacao_id=tenant_id, campo_id=values.id, **row)
    stamp = CrmCustomField.__table__.c.core_atualizado_em
    applied = await session.scalar(
        new.on_conflict_do_update(
            index_elements=[CrmCustomField.organizacao_id, CrmCustomField.campo_id],
            set_={**row, "deletado_em": None},
            where=stamp < new.excluded.core_atualizado_em,
        ).returning(CrmCustomField.id)
    )
    return applied is not None


async def delete_field(
    session: AsyncSession, tenant_id: uuid.UUID, field_id: str, updated_at: dt.datetime
) -> bool:
    new = insert(CrmCustomField).values(
        organizacao_id=tenant_id,
        campo_id=field_id,
        rotulo=field_id,
        tipo="text",
        core_atualizado_em=updated_at,
        deletado_em=func.now(),
    )
    stamp = CrmCustomField.__table__.c.core_atualizado_em
    applied = await session.scalar(
        new.on_conflict_do_update(
            index_elements=[CrmCustomField.organizacao_id, CrmCustomField.campo_id],
            set_={"core_atualizado_em": updated_at, "deletado_em": func.now()},
            where=stamp <= new.excluded.core_atualizado_em,
        ).returning(CrmCustomField.id)
    )
    return applied is not None


async def mappable_fields(session: AsyncSession) -> list[MappableField]:
    """Standard fields, then the live custom fields by label."""
    rows = await session.scalars(
        select(CrmCustomField)
        .where(CrmCustomField.deletado_em.is_(None))
        .order_by(CrmCustomField.rotulo, CrmCustomField.campo_id)
    )
    custom = [MappableField(CUSTOM_PREFIX + r.campo_id, r.rotulo, r.tipo, True) for r in rows]
    return [*STANDARD_FIELDS, *custom]


async def custom_targets(session: AsyncSession) -> frozenset[str] | None:
    """`custom:<id>` of every live custom field; None when the directory never defined any
    (the tenant is not synced: mappings may then name custom fields freely)."""
    rows = list(
        (await session.execute(select(CrmCustomField.campo_id, CrmCustomField.deletado_em))).all()
    )
    if not rows:
        return None
    return frozenset(CUSTOM_PREFIX + r.campo_id for r in rows if r.deletado_em is None)
