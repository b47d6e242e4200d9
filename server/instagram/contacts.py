"""The CRM side of a DM: the contact found or created by IGSID (with the profile Instagram
gives, fetched once, when the contact is new) and, for the first DM of an unknown sender, the
pre-opportunity: an opportunity in the stage the connection names (`funil_id`/`etapa_id` in
its settings; by default the tenant's first pipeline's first stage), owned by the
connection's owner."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Contact, InstagramConnection, Opportunity, Pipeline, PipelineStage
from server.providers.instagram import Profile

ORIGIN = "instagram"


@dataclass(frozen=True)
class ContactFound:
    id: uuid.UUID
    created: bool
    opportunity_id: uuid.UUID | None = None


async def contact_id_by_igsid(session: AsyncSession, igsid: str) -> uuid.UUID | None:
    found: uuid.UUID | None = await session.scalar(
        select(Contact.id).where(Contact.instagram_igsid == igsid, Contact.deletado_em.is_(None))
    )
    return found


async def upsert_contact(
    session: AsyncSession,
    conn: InstagramConnection,
    igsid: str,
    profile: Profile | None,
    *,
    pre_opportunity: bool,
) -> ContactFound:
    """The live contact of `igsid`; created (origem instagram) when there is none, with the
    pre-opportunity when `pre_opportunity` (the sender wrote first)."""
    name = (profile.name or profile.username) if profile else ""
    created = await session.scalar(
        insert(Contact)
        .values(
            organizacao_id=conn.organizacao_id,
            nome=name or f"Instagram {igsid[-6:]}",
            instagram_igsid=igsid,
            instagram_username=profile.username if profile and profile.username else None,
            origem=ORIGIN,
            owner_id=conn.usuario_id,
            tags=["instagram"],
        )
        .on_conflict_do_nothing(
            index_elements=["organizacao_id", "instagram_igsid"],
            index_where=Contact.instagram_igsid.is_not(None) & Contact.deletado_em.is_(None),
        )
        .returning(Contact.id)
    )
    if created is None:
        found = await contact_id_by_igsid(session, igsid)
        assert found is not None  # the conflict says it exists
        return ContactFound(found, created=False)
    opportunity = None
    if pre_opportunity:
        opportunity = await _pre_opportunity(session, conn, created, name or igsid)
    return ContactFound(created, created=True, opportunity_id=opportunity)


async def _stage(
    session: AsyncSession, conn: InstagramConnection
) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    settings = conn.configuracoes or {}
    funil, etapa = settings.get("funil_id"), settings.get("etapa_id")
    if funil and etapa:
        stage = await session.scalar(
            select(PipelineStage).where(
                PipelineStage.id == uuid.UUID(str(etapa)),
                PipelineStage.funil_id == uuid.UUID(str(funil)),
                PipelineStage.deletado_em.is_(None),
            )
        )
        if stage is not None:
            return stage.funil_id, stage.id
    first = await session.scalar(
        select(PipelineStage)
        .join(Pipeline, Pipeline.id == PipelineStage.funil_id)
        .where(Pipeline.deletado_em.is_(None), PipelineStage.deletado_em.is_(None))
        .order_by(
            Pipeline.ordem, Pipeline.criado_em, Pipeline.id, PipelineStage.ordem, PipelineStage.id
        )
        .limit(1)
    )
    return (first.funil_id, first.id) if first is not None else (None, None)


async def _pre_opportunity(
    session: AsyncSession, conn: InstagramConnection, contact_id: uuid.UUID, name: str
) -> uuid.UUID:
    funil, etapa = await _stage(session, conn)
    opportunity = Opportunity(
        organizacao_id=conn.organizacao_id,
        contato_id=contact_id,
        funil_id=funil,
        etapa_id=etapa,
        owner_id=conn.usuario_id,
        titulo=f"{name} - Instagram Direct"[:255],
        origem=ORIGIN,
    )
    session.add(opportunity)
    await session.flush()
    return opportunity.id
