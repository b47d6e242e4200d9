"""Reading form mappings with the names they point at (page, pipeline, stage, owner): one query
for a whole page of mappings, not one per mapping."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import LeadAdsForm, MetaPage, Pipeline, PipelineStage, User
from server.auth.caller import Caller
from server.bootstrap import Deps
from server.meta_leads.mappings import get
from server.paging import decode_token, encode_token, offset_of, page_size

MAX_PAGE = 200


@dataclass(frozen=True)
class MappingDetail:
    row: LeadAdsForm
    page_id: str
    page_name: str
    funil_nome: str
    etapa_nome: str
    owner_nome: str


@dataclass(frozen=True)
class MappingPage:
    items: list[MappingDetail]
    next_page_token: str
    total_size: int


def _with_names(query: Select[Any]) -> Select[Any]:
    return (
        query.add_columns(MetaPage.page_id, MetaPage.page_name, Pipeline.nome)
        .add_columns(PipelineStage.nome.label("etapa_nome"), User.nome.label("owner_nome"))
        .outerjoin(MetaPage, MetaPage.id == LeadAdsForm.pagina_id)
        .outerjoin(Pipeline, Pipeline.id == LeadAdsForm.funil_id)
        .outerjoin(PipelineStage, PipelineStage.id == LeadAdsForm.etapa_destino_id)
        .outerjoin(User, User.id == LeadAdsForm.owner_id)
    )


async def _details(session: AsyncSession, query: Select[Any]) -> list[MappingDetail]:
    rows: list[Any] = list((await session.execute(_with_names(query))).all())
    return [
        MappingDetail(
            row=r[0],
            page_id=r[1] or "",
            page_name=r[2] or "",
            funil_nome=r[3] or "",
            etapa_nome=r[4] or "",
            owner_nome=r[5] or "",
        )
        for r in rows
    ]


async def detail(session: AsyncSession, mapping_id: str) -> MappingDetail:
    """One live mapping with its names; MAPPING_NOT_FOUND otherwise."""
    row = await get(session, mapping_id)
    (found,) = await _details(session, select(LeadAdsForm).where(LeadAdsForm.id == row.id))
    return found


async def detail_of(deps: Deps, caller: Caller, mapping_id: uuid.UUID) -> MappingDetail:
    async with deps.db.unit_of_work(caller) as session:
        return await detail(session, str(mapping_id))


async def list_mappings(
    deps: Deps,
    caller: Caller,
    *,
    page_id: str,
    ativo: bool | None,
    size: int,
    token: str,
) -> MappingPage:
    """The tenant's live mappings, newest first, optionally of one page or activity."""
    query = select(LeadAdsForm).where(LeadAdsForm.deletado_em.is_(None))
    if page_id:
        query = query.where(
            LeadAdsForm.pagina_id.in_(select(MetaPage.id).where(MetaPage.page_id == page_id))
        )
    if ativo is not None:
        query = query.where(LeadAdsForm.ativo.is_(ativo))
    start = offset_of(decode_token(token))
    size = min(page_size(size), MAX_PAGE)
    ordered = query.order_by(LeadAdsForm.criado_em.desc(), LeadAdsForm.id)
    async with deps.db.unit_of_work(caller) as session:
        total = int(await session.scalar(select(func.count()).select_from(query.subquery())) or 0)
        items = await _details(session, ordered.offset(start).limit(size))
    more = start + size < total
    return MappingPage(items, encode_token({"o": start + size}) if more else "", total)
