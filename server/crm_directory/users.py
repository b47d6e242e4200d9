"""The user mirror (usuarios): who works in the tenant and who takes part in lead distribution.

Keyed by the core's id (the `sub` of the user's tokens, so a user first seen through a token
and later written by the directory is one row) and ordered by the core's `updated_at`
(`core_atualizado_em`): an equal or older write changes nothing; a delete deactivates the
user and takes them out of distribution, keeping their connections and history.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import User
from server.crm_directory.contacts import normalize_email
from server.errors import FieldViolation

ROLES = ("super_admin", "admin", "member")


@dataclass(frozen=True)
class UserValues:
    id: uuid.UUID
    updated_at: dt.datetime
    nome: str
    email: str | None = None
    role: str = "member"
    ativo: bool = True
    participa_distribuicao: bool = False


def problems_of(values: UserValues, prefix: str = "") -> list[FieldViolation]:
    problems = []
    if not values.nome.strip():
        problems.append(FieldViolation(f"{prefix}nome", "required"))
    if values.email and normalize_email(values.email) is None:
        problems.append(FieldViolation(f"{prefix}email", "not an e-mail address"))
    if values.role not in ROLES:
        problems.append(FieldViolation(f"{prefix}role", "must be admin, member or super_admin"))
    if values.updated_at.tzinfo is None:
        problems.append(FieldViolation(f"{prefix}updated_at", "required (a timestamp)"))
    return problems


async def upsert_user(session: AsyncSession, tenant_id: uuid.UUID, values: UserValues) -> bool:
    """Applies the write unless an equal or newer one was; returns whether it applied.
    Values must have passed `problems_of`."""
    row = {
        "nome": values.nome.strip()[:255],
        "email": normalize_email(values.email or ""),
        "role": values.role,
        "ativo": values.ativo,
        "participa_distribuicao": values.participa_distribuicao and values.ativo,
        "core_atualizado_em": values.updated_at,
    }
    new = insert(User).values(id=values.id, organizacao_id=tenant_id, **row)
    stamp = User.__table__.c.core_atualizado_em
    applied = await session.scalar(
        new.on_conflict_do_update(
            index_elements=[User.id],
            set_={**row, "deletado_em": None},
            where=or_(stamp.is_(None), stamp < new.excluded.core_atualizado_em),
        ).returning(User.id)
    )
    return applied is not None


async def delete_user(
    session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID, updated_at: dt.datetime
) -> bool:
    """Deactivates the user as of `updated_at` (a tombstone if unknown); a delete wins a tie."""
    new = insert(User).values(
        id=user_id,
        organizacao_id=tenant_id,
        nome=f"Usuario {str(user_id)[:8]}",
        ativo=False,
        participa_distribuicao=False,
        core_atualizado_em=updated_at,
        deletado_em=func.now(),
    )
    stamp = User.__table__.c.core_atualizado_em
    applied = await session.scalar(
        new.on_conflict_do_update(
            index_elements=[User.id],
            set_={
                "ativo": False,
                "participa_distribuicao": False,
                "core_atualizado_em": updated_at,
                "deletado_em": func.now(),
            },
            where=or_(stamp.is_(None), stamp <= new.excluded.core_atualizado_em),
        ).returning(User.id)
    )
    return applied is not None


async def distribution_pool(session: AsyncSession) -> list[uuid.UUID]:
    """The users Lead Ads distributes leads to, in a stable order: the active users the CRM
    directory marks as taking part. Nobody else, ever: not a super admin, and not a user known
    only from a token (created just in time, never written by the directory, so without
    `core_atualizado_em`). An empty pool means no automatic owner."""
    return list(
        await session.scalars(
            select(User.id)
            .where(
                User.ativo.is_(True),
                User.deletado_em.is_(None),
                User.participa_distribuicao.is_(True),
                User.core_atualizado_em.is_not(None),
                User.role != "super_admin",
            )
            .order_by(User.criado_em, User.id)
        )
    )
