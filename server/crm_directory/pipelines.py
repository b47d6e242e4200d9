"""The pipeline mirror (funis, etapas_funil): pipelines with their ordered stages.

A pipeline write carries all its stages in order and is ordered as a whole by the core's
`updated_at`: a stale write touches neither the pipeline nor its stages. Stages the pipeline
no longer lists are marked deleted (opportunities keep pointing at them).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Pipeline, PipelineStage
from server.errors import FieldViolation


@dataclass(frozen=True)
class StageValues:
    id: uuid.UUID
    nome: str


@dataclass(frozen=True)
class PipelineValues:
    id: uuid.UUID
    updated_at: dt.datetime
    nome: str
    ordem: int = 0
    etapas: Sequence[StageValues] = field(default_factory=tuple)


@dataclass(frozen=True)
class PipelineView:
    id: uuid.UUID
    nome: str
    ordem: int
    etapas: list[tuple[uuid.UUID, str, int]]


def problems_of(values: PipelineValues, prefix: str = "") -> list[FieldViolation]:
    problems = []
    if not values.nome.strip():
        problems.append(FieldViolation(f"{prefix}nome", "required"))
    if values.updated_at.tzinfo is None:
        problems.append(FieldViolation(f"{prefix}updated_at", "required (a timestamp)"))
    seen: set[uuid.UUID] = set()
    for i, stage in enumerate(values.etapas):
        if not stage.nome.strip():
            problems.append(FieldViolation(f"{prefix}etapas[{i}].nome", "required"))
        if stage.id in seen:
            problems.append(FieldViolation(f"{prefix}etapas[{i}].id", "listed twice"))
        seen.add(stage.id)
    return problems


async def upsert_pipeline(
    session: AsyncSession, tenant_id: uuid.UUID, values: PipelineValues, prefix: str = ""
) -> tuple[bool, list[FieldViolation]]:
    """Applies the write unless an equal or newer one was. Returns (applied, problems): a
    stage id that belongs to another pipeline is a problem (the caller rolls back)."""
    row = {"nome": values.nome.strip()[:255], "ordem": values.ordem}
    new = insert(Pipeline).values(
        id=values.id, organizacao_id=tenant_id, core_atualizado_em=values.updated_at, **row
    )
    stamp = Pipeline.__table__.c.core_atualizado_em
    applied = await session.scalar(
        new.on_conflict_do_update(
            index_elements=[Pipeline.id],
            set_={**row, "core_atualizado_em": values.updated_at, "deletado_em": None},
            where=or_(stamp.is_(None), stamp < new.excluded.core_atualizado_em),
        ).returning(Pipeline.id)
    )
    if applied is None:
        return False, []
    problems: list[FieldViolation] = []
    ids = [stage.id for stage in values.etapas]
    elsewhere = set(
        await session.scalars(
            select(PipelineStage.id).where(
                PipelineStage.id.in_(ids), PipelineStage.funil_id != values.id
            )
        )
    )
    for i, stage in enumerate(values.etapas):
        if stage.id in elsewhere:
            problems.append(
                FieldViolation(f"{prefix}etapas[{i}].id", "a stage of another pipeline")
            )
            continue
        stage_row = {"nome": stage.nome.strip()[:255], "ordem": i + 1}
        await session.execute(
            insert(PipelineStage)
            .values(id=stage.id, organizacao_id=tenant_id, funil_id=values.id, **stage_row)
            .on_conflict_do_update(
                index_elements=[PipelineStage.id], set_={**stage_row, "deletado_em": None}
            )
        )
    await session.execute(
        update(PipelineStage)
        .where(
            PipelineStage.funil_id == values.id,
            PipelineStage.id.not_in(ids),
            PipelineStage.deletado_em.is_(None),
        )
        .values(deletado_em=func.now())
    )
    return True, problems


async def delete_pipeline(
    session: AsyncSession, tenant_id: uuid.UUID, pipeline_id: uuid.UUID, updated_at: dt.datetime
) -> bool:
    """Marks the pipeline and its stages deleted as of `updated_at` (a tombstone if unknown)."""
    new = insert(Pipeline).values(
        id=pipeline_id,
        organizacao_id=tenant_id,
        nome="",
        core_atualizado_em=updated_at,
        deletado_em=func.now(),
    )
    stamp = Pipeline.__table__.c.core_atualizado_em
    applied = await session.scalar(
        new.on_conflict_do_update(
            index_elements=[Pipeline.id],
            set_={"core_atualizado_em": updated_at, "deletado_em": func.now()},
            where=or_(stamp.is_(None), stamp <= new.excluded.core_atualizado_em),
        ).returning(Pipeline.id)
    )
    if applied is None:
        return False
    await session.execute(
        update(PipelineStage)
        .where(PipelineStage.funil_id == pipeline_id, PipelineStage.deletado_em.is_(None))
        .values(deletado_em=func.now())
    )
    return True


async def list_pipelines(
    session: AsyncSession, *, after: tuple[int, uuid.UUID] | None, limit: int
) -> list[PipelineView]:
    """Live pipelines by (ordem, id), each with its live stages in order."""
    query = select(Pipeline).where(Pipeline.deletado_em.is_(None))
    if after is not None:
        query = query.where(tuple_(Pipeline.ordem, Pipeline.id) > tuple_(*after))
    pipelines = list(
        await session.scalars(query.order_by(Pipeline.ordem, Pipeline.id).limit(limit))
    )
    stages = list(
        await session.scalars(
            select(PipelineStage)
            .where(
                PipelineStage.funil_id.in_([p.id for p in pipelines]),
                PipelineStage.deletado_em.is_(None),
            )
            .order_by(PipelineStage.funil_id, PipelineStage.ordem)
        )
    )
    return [
        PipelineView(
            p.id,
            p.nome,
            p.ordem,
            [(s.id, s.nome, s.ordem) for s in stages if s.funil_id == p.id],
        )
        for p in pipelines
    ]
