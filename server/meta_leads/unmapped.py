"""Leads that arrived before their form was mapped run when the mapping exists.

A lead of a form with no (active) mapping is recorded `sem_mapeamento` and creates nothing.
When the form's mapping is created (or turned active), those ledger rows are released in the
same transaction: each row is removed and its lead queued again (`meta_leadgen`), so it
becomes a contact and opportunity once, by the mapping's rules. The ledger row being gone is
also what lets the missed-lead backfill take such a lead in if the queued run is lost.
"""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import MetaLeadReceived
from server.resilience.jobs import enqueue
from server.resilience.operations import META_LEADGEN

UNMAPPED = "sem_mapeamento"


async def release_unmapped_leads(
    session: AsyncSession, tenant: uuid.UUID, form_id: str, mapping_id: uuid.UUID
) -> int:
    """Queues again every lead of `form_id` recorded without a mapping. Returns how many."""
    rows = list(
        await session.scalars(
            select(MetaLeadReceived)
            .where(MetaLeadReceived.form_id == form_id, MetaLeadReceived.status == UNMAPPED)
            .with_for_update()
        )
    )
    for row in rows:
        created = row.lead_criado_em
        await enqueue(
            session,
            tenant_id=tenant,
            operation=META_LEADGEN,
            payload={
                "leadgen_id": row.leadgen_id,
                "page_id": row.page_id,
                "form_id": row.form_id,
                "created_time": int(created.timestamp()) if created else None,
                "origem": row.origem,
            },
            # Not the webhook's key: that job ran (and recorded the lead unmapped).
            idempotency_key=f"{META_LEADGEN.name}:{row.leadgen_id}:mapeado:{mapping_id}",
        )
    if rows:
        await session.execute(
            delete(MetaLeadReceived).where(MetaLeadReceived.id.in_([r.id for r in rows]))
        )
    return len(rows)
