"""Facebook pages (spec 2.2 step 2): list what the account manages, select one.

`debug_token` (with the app token) says which pages the person really granted in the
dialog (`granular_scopes[].target_ids`, docs/providers.md, Meta Lead Ads): a page listed by
`/me/accounts` but not granted `leads_retrieval` cannot deliver leads, so it cannot be chosen.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from db.models import MetaPage
from server.audit import record_audit
from server.auth.caller import Caller
from server.bootstrap import Deps
from server.meta_leads.connection import (
    active_connection,
    call_graph,
    graph,
    meta_app,
    page_token_context,
    user_token,
)
from server.meta_leads.errors import MissingPagePermission, PageInUse, PageNotFound
from server.providers.meta_graph import PageAccount, TokenInfo


@dataclass(frozen=True)
class PageView:
    account: PageAccount
    leads_retrieval: bool
    pages_manage_ads: bool
    row: MetaPage | None


async def _accounts(deps: Deps, caller: Caller) -> tuple[list[PageAccount], TokenInfo]:
    tenant = caller.require_tenant()
    async with deps.db.unit_of_work(caller) as session:
        conn = await active_connection(session)
        app = await meta_app(deps, session)
        token = user_token(deps, conn)
    client = graph(deps, app.version)
    accounts = await call_graph(deps, tenant, lambda: client.accounts(token))
    info = await call_graph(
        deps,
        tenant,
        lambda: client.debug_token(token, app_id=app.app_id, app_secret=app.app_secret),
    )
    return accounts, info


async def list_pages(deps: Deps, caller: Caller) -> list[PageView]:
    accounts, info = await _accounts(deps, caller)
    async with deps.db.unit_of_work(caller) as session:
        rows = {p.page_id: p for p in await session.scalars(select(MetaPage))}
    return [
        PageView(
            a,
            info.granted("leads_retrieval", a.id),
            info.granted("pages_manage_ads", a.id),
            rows.get(a.id),
        )
        for a in accounts
    ]


_IN_USE = "this page is already connected to another organization"


async def _held_elsewhere(deps: Deps, page_id: str, tenant: uuid.UUID) -> bool:
    """Whether the page is active in another tenant: a leadgen webhook names only the page,
    so a page shared by two tenants would give each a copy of every lead."""
    async with deps.db.system() as session:
        rows = await session.execute(
            text("SELECT organizacao_id FROM app_resolve_meta_page(:id)"), {"id": page_id}
        )
        return any(holder != tenant for (holder,) in rows)


async def select_page(deps: Deps, caller: Caller, page_id: str) -> MetaPage:
    """Stores the page with its encrypted token and subscribes the app to `leadgen`.

    Raises PageInUse (without naming the other tenant) when the page is active elsewhere.
    """
    tenant = caller.require_tenant()
    if await _held_elsewhere(deps, page_id, tenant):
        raise PageInUse(_IN_USE)
    accounts, info = await _accounts(deps, caller)
    account = next((a for a in accounts if a.id == page_id), None)
    if account is None:
        raise PageNotFound(f"the connected account does not manage page {page_id}")
    if not info.granted("leads_retrieval", page_id):
        raise MissingPagePermission(
            "leads_retrieval was not granted for this page; reconnect and allow it"
        )
    client = graph(deps)
    await call_graph(deps, tenant, lambda: client.subscribe_leadgen(page_id, account.access_token))
    try:
        return await _store(deps, caller, page_id, account, info)
    except IntegrityError as exc:  # another tenant selected it since the check above
        raise PageInUse(_IN_USE) from exc


async def _store(
    deps: Deps, caller: Caller, page_id: str, account: PageAccount, info: TokenInfo
) -> MetaPage:
    tenant = caller.require_tenant()
    async with deps.db.unit_of_work(caller) as session:
        conn = await active_connection(session)
        values = {
            "conexao_id": conn.id,
            "page_name": account.name,
            "page_access_token_encrypted": deps.keyring.encrypt(
                account.access_token, page_token_context(tenant)
            ),
            "leads_retrieval": True,
            "pages_manage_ads": info.granted("pages_manage_ads", page_id),
            "ativo": True,
        }
        stmt = insert(MetaPage).values(organizacao_id=tenant, page_id=page_id, **values)
        await session.execute(
            stmt.on_conflict_do_update(index_elements=["organizacao_id", "page_id"], set_=values)
        )
        page = await session.scalar(select(MetaPage).where(MetaPage.page_id == page_id))
        assert page is not None
        await record_audit(
            session,
            caller,
            "meta.page_selected",
            entity_type="paginas_meta",
            entity_id=page.id,
            details={"page_id": page_id, "page_name": account.name},
        )
    return page


async def selected_page(deps: Deps, caller: Caller, page_id: str) -> MetaPage:
    async with deps.db.unit_of_work(caller) as session:
        page = await session.scalar(
            select(MetaPage).where(MetaPage.page_id == page_id, MetaPage.ativo.is_(True))
        )
    if page is None:
        raise PageNotFound(f"page {page_id} is not selected")
    return page
