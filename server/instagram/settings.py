"""The connection's settings (`conexoes_instagram.configuracoes`): the pipeline and stage the
pre-opportunity of a stranger's first DM opens in (server/instagram/contacts.py reads them).

Checked against the CRM's pipeline mirror before anything is written: a live pipeline of the
tenant and a live stage of that pipeline, or neither (the default: the first pipeline's first
stage).
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import InstagramConnection, Pipeline, PipelineStage
from server.audit import record_audit
from server.auth.caller import Caller
from server.errors import ConnectionNotFound, InvalidArgument, PermissionNotGranted
from server.protoconv import parse_uuid

_KEYS = ("funil_id", "etapa_id")


async def update(
    tx: AsyncSession, caller: Caller, *, funil_id: str, etapa_id: str, usuario_id: str
) -> InstagramConnection:
    """Validates, then stores the stage on the connection (the caller's, or as an admin a
    member's) in `tx`. Returns the updated row."""
    if usuario_id and not caller.is_admin:
        raise PermissionNotGranted("only admins may set another user's connection")
    owner = parse_uuid(usuario_id, "usuario_id") if usuario_id else caller.require_user()
    chosen = await _stage(tx, caller.require_tenant(), funil_id.strip(), etapa_id.strip())
    row = await tx.scalar(
        select(InstagramConnection)
        .where(InstagramConnection.usuario_id == owner, InstagramConnection.deletado_em.is_(None))
        .with_for_update()
    )
    if row is None:
        raise ConnectionNotFound("Instagram is not connected")
    settings = {k: v for k, v in (row.configuracoes or {}).items() if k not in _KEYS}
    if chosen is not None:
        settings.update(funil_id=str(chosen.funil_id), etapa_id=str(chosen.id))
    row.configuracoes = settings
    await tx.flush()
    await record_audit(
        tx,
        caller,
        "instagram.settings_updated",
        entity_type="conexoes_instagram",
        entity_id=row.id,
        details={k: settings.get(k) for k in _KEYS},
    )
    await tx.refresh(row)  # atualizado_em, set by the database
    return row


async def _stage(
    tx: AsyncSession, tenant: uuid.UUID, funil_id: str, etapa_id: str
) -> PipelineStage | None:
    if not funil_id and not etapa_id:
        return None
    if not funil_id:
        raise InvalidArgument.field("funil_id", "required with etapa_id")
    if not etapa_id:
        raise InvalidArgument.field("etapa_id", "required with funil_id")
    pipeline = await tx.scalar(
        select(Pipeline).where(
            Pipeline.id == parse_uuid(funil_id, "funil_id"),
            Pipeline.organizacao_id == tenant,
            Pipeline.deletado_em.is_(None),
        )
    )
    if pipeline is None:
        raise InvalidArgument.field("funil_id", "no live pipeline of this tenant has this id")
    stage = await tx.scalar(
        select(PipelineStage).where(
            PipelineStage.id == parse_uuid(etapa_id, "etapa_id"),
            PipelineStage.funil_id == pipeline.id,
            PipelineStage.deletado_em.is_(None),
        )
    )
    if stage is None:
        raise InvalidArgument.field("etapa_id", "not a live stage of this pipeline")
    return stage
