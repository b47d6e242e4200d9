"""A selected page's Lead Ads forms with their questions (spec 2.2 step 3; docs/providers.md,
Meta Lead Ads)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from db.models import LeadAdsForm
from server.auth.caller import Caller
from server.bootstrap import Deps
from server.meta_leads.connection import active_connection, call_graph, graph, page_token
from server.meta_leads.pages import selected_page
from server.providers.meta_graph import LeadForm


@dataclass(frozen=True)
class FormView:
    form: LeadForm
    page_id: str
    mapping_id: str | None


async def page_forms(deps: Deps, caller: Caller, page_id: str) -> list[LeadForm]:
    page = await selected_page(deps, caller, page_id)
    async with deps.db.unit_of_work(caller) as session:
        await active_connection(session)
    token = page_token(deps, page)
    client = graph(deps)
    return await call_graph(
        deps, caller.require_tenant(), lambda: client.leadgen_forms(page_id, token)
    )


async def list_forms(
    deps: Deps, caller: Caller, page_id: str, *, include_archived: bool
) -> list[FormView]:
    forms = await page_forms(deps, caller, page_id)
    async with deps.db.unit_of_work(caller) as session:
        mapped = {
            m.form_id: str(m.id)
            for m in await session.scalars(
                select(LeadAdsForm).where(LeadAdsForm.deletado_em.is_(None))
            )
        }
    return [
        FormView(f, page_id, mapped.get(f.id))
        for f in forms
        if include_archived or f.status == "ACTIVE"
    ]
