"""Missed leads (DESIGN "Nothing lost"): webhooks can be dropped (Meta gives up after 36 h,
our endpoint may have been down). Every 15 minutes, for each active mapped form of each
tenant, Graph is asked for the form's leads since the last one received (less an overlap,
for webhooks still in flight) and any lead not in the ledger is enqueued as a
`meta_leadgen` job, keyed as the webhook's job is, so a lead is processed once whichever
path brings it. https://developers.facebook.com/docs/marketing-api/guides/lead-ads/retrieving
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from sqlalchemy import select

from db.models import LeadAdsForm, MetaConnection, MetaLeadReceived, MetaPage
from server.bootstrap import Deps
from server.meta_leads.connection import graph, mark_broken, page_token, tenant_service
from server.meta_leads.tenants import each_tenant
from server.providers.errors import ProviderAuthError
from server.providers.meta_graph import LeadData
from server.resilience.jobs import enqueue
from server.resilience.operations import META_LEADGEN

_log = logging.getLogger(__name__)
INTERVAL_S = 15 * 60
OVERLAP = dt.timedelta(hours=1)


def job_key(leadgen_id: str) -> str:
    """The ingress's key for a leadgen webhook job (server/ingress: `<provider>:<event id>`)."""
    return f"meta_leadgen:{leadgen_id}"


async def run_backfill(deps: Deps) -> int:
    """One pass over every tenant; returns how many missed leads were enqueued."""
    found = await each_tenant(deps, "lead backfill", lambda tenant: backfill_tenant(deps, tenant))
    return sum(found.values())


async def backfill_tenant(deps: Deps, tenant: uuid.UUID) -> int:
    caller = tenant_service(tenant)
    async with deps.db.unit_of_work(caller) as session:
        conn = await session.scalar(
            select(MetaConnection).where(
                MetaConnection.deletado_em.is_(None), MetaConnection.status == "active"
            )
        )
        if conn is None:
            return 0
        rows = (
            await session.execute(
                select(LeadAdsForm, MetaPage)
                .join(MetaPage, MetaPage.id == LeadAdsForm.pagina_id)
                .where(
                    LeadAdsForm.deletado_em.is_(None),
                    LeadAdsForm.ativo.is_(True),
                    MetaPage.ativo.is_(True),
                )
            )
        ).all()
        work = [(form, page, page_token(deps, page)) for form, page in rows]
    client = graph(deps)
    enqueued = 0
    for form, page, token in work:
        since = (form.ultimo_lead_recebido or form.criado_em) - OVERLAP
        try:
            leads = await client.form_leads(form.form_id, token, since=since)
        except ProviderAuthError as exc:
            async with deps.db.unit_of_work(caller) as session:
                await mark_broken(session, tenant, exc)
            return enqueued
        enqueued += await _enqueue_missing(deps, tenant, page.page_id, form.form_id, leads)
    return enqueued


async def _enqueue_missing(
    deps: Deps, tenant: uuid.UUID, page_id: str, form_id: str, leads: list[LeadData]
) -> int:
    if not leads:
        return 0
    count = 0
    async with deps.db.unit_of_work(tenant_service(tenant)) as session:
        seen = set(
            await session.scalars(
                select(MetaLeadReceived.leadgen_id).where(
                    MetaLeadReceived.leadgen_id.in_([lead.id for lead in leads])
                )
            )
        )
        for lead in leads:
            if lead.id in seen:
                continue
            created = lead.created_time
            job = await enqueue(
                session,
                tenant_id=tenant,
                operation=META_LEADGEN,
                payload={
                    "leadgen_id": lead.id,
                    "page_id": page_id,
                    "form_id": lead.form_id or form_id,
                    "created_time": int(created.timestamp()) if created else None,
                    "origem": "backfill",
                },
                idempotency_key=job_key(lead.id),
            )
            count += job is not None
    if count:
        _log.info("backfill found %d missed lead(s) of form %s", count, form_id)
    return count
