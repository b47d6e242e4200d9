"""What every Lead Ads operation needs: the tenant's connection and its tokens, the Meta App
credentials, a Graph client behind the meta_graph breaker, and what to do when Meta says a
token is dead (Graph 190: mark the connection, alert the admin, tell the caller to reconnect).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import LeadAdsForm, MetaConnection, MetaPage, PendingEvent, User
from server.auth.caller import Caller, Role
from server.bootstrap import Deps
from server.errors import PlatformNotConfigured, TokenExpired
from server.meta_leads.errors import MetaNotConnected, TokenRevoked
from server.providers.errors import ProviderAuthError
from server.providers.meta_graph import MetaGraphClient
from server.resilience.alerts import connection_broken, connection_recovered, resolve_alerts
from server.security.cipher import SecretContext

T = TypeVar("T")
CONNECTION_TYPE = "meta_lead_ads"
# Graph 190 subcode 458: the person removed the app (revoked); the others mean expired
# (463), password changed (460) or session invalidated (467): reconnecting fixes both.
REVOKED_SUBCODES = frozenset({458})
DEAD_ALERT_KINDS = ("meta_token_expired", "meta_token_revoked")
# The alert that warns before a token dies (resolved by connection_recovered too).
EXPIRING_KIND = "token_expiring"
# A lead job parked until reconnection waits at this date (see leads.py).
PARKED_UNTIL = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


def user_token_context(tenant_id: uuid.UUID) -> SecretContext:
    return SecretContext("conexoes_meta", "access_token_encrypted", tenant_id)


def page_token_context(tenant_id: uuid.UUID) -> SecretContext:
    return SecretContext("paginas_meta", "page_access_token_encrypted", tenant_id)


@dataclass(frozen=True)
class MetaApp:
    app_id: str
    app_secret: str
    version: str


def graph(deps: Deps, version: str | None = None) -> MetaGraphClient:
    return MetaGraphClient(
        deps.http,
        deps.settings.meta_graph_url,
        version or deps.settings.meta_graph_version,
        guard=lambda: deps.breakers.guard("meta_graph"),
    )


async def meta_app(deps: Deps, session: AsyncSession) -> MetaApp:
    """The super admin's Meta App; FAILED_PRECONDITION until it is set."""
    values = await deps.platform.resolve(session, "meta")
    if not values.get("app_id") or not values.get("app_secret"):
        raise PlatformNotConfigured("the super admin has not configured the Meta App yet")
    version = values.get("graph_api_version") or deps.settings.meta_graph_version
    return MetaApp(values["app_id"], values["app_secret"], version)


@dataclass(frozen=True)
class ConnectionDetail:
    """The connection as GetMetaConnection shows it: the row and what it points at."""

    row: MetaConnection | None
    page: MetaPage | None = None
    active_forms: int = 0
    connected_by: User | None = None


async def describe(session: AsyncSession, row: MetaConnection | None) -> ConnectionDetail:
    if row is None or row.deletado_em is not None:
        return ConnectionDetail(row)
    page = await session.scalar(
        select(MetaPage)
        .where(MetaPage.ativo.is_(True))
        .order_by(MetaPage.atualizado_em.desc())
        .limit(1)
    )
    active_forms = await session.scalar(
        select(func.count())
        .select_from(LeadAdsForm)
        .where(LeadAdsForm.deletado_em.is_(None), LeadAdsForm.ativo.is_(True))
    )
    by = await session.get(User, row.conectado_por) if row.conectado_por is not None else None
    return ConnectionDetail(row, page, int(active_forms or 0), by)


async def live_connection(session: AsyncSession) -> MetaConnection | None:
    row: MetaConnection | None = await session.scalar(
        select(MetaConnection).where(MetaConnection.deletado_em.is_(None))
    )
    return row


async def active_connection(session: AsyncSession) -> MetaConnection:
    """The connection, usable: NOT connected and dead tokens are told apart."""
    conn = await live_connection(session)
    if conn is None or not conn.access_token_encrypted:
        raise MetaNotConnected("Meta is not connected; connect it first")
    if conn.status == "revoked":
        raise TokenRevoked("the Meta authorization was revoked; reconnect Meta")
    if conn.status != "active":
        raise TokenExpired("the Meta token expired; reconnect Meta")
    return conn


def user_token(deps: Deps, conn: MetaConnection) -> str:
    return deps.keyring.decrypt(
        conn.access_token_encrypted, user_token_context(conn.organizacao_id)
    )


def page_token(deps: Deps, page: MetaPage) -> str:
    if not page.page_access_token_encrypted:
        raise MetaNotConnected("the page has no token; select it again")
    return deps.keyring.decrypt(
        page.page_access_token_encrypted, page_token_context(page.organizacao_id)
    )


async def mark_broken(session: AsyncSession, tenant_id: uuid.UUID, error: ProviderAuthError) -> str:
    """Marks the tenant's connection expired/revoked and alerts its admins (once while open).
    Returns the new status. Runs in the caller's unit of work (its own, committed)."""
    status = dead_status(error.provider_subcode)
    conn = await session.scalar(
        select(MetaConnection)
        .where(MetaConnection.deletado_em.is_(None), MetaConnection.status == "active")
        .with_for_update()
    )
    if conn is not None:
        await break_connection(session, conn, status, error.provider_subcode)
    return status


def dead_status(subcode: int | None) -> str:
    return "revoked" if subcode in REVOKED_SUBCODES else "expired"


async def break_connection(
    session: AsyncSession, conn: MetaConnection, status: str, subcode: int | None
) -> None:
    """Marks a (locked, active) connection dead: status, admin and owner alert (kind
    `meta_token_<status>`), CONNECTION_CHANGED. Lead jobs and the health probe both end here."""
    reason = "o acesso foi revogado" if status == "revoked" else "o token expirou"
    await connection_broken(
        session,
        model=MetaConnection,
        connection_id=conn.id,
        tenant_id=conn.organizacao_id,
        owner_id=conn.conectado_por,
        connection_type=CONNECTION_TYPE.upper(),
        error=f"{reason} (Graph 190/{subcode or '-'})",
        status=status,
        kind=f"meta_token_{status}",
    )


async def mark_recovered(session: AsyncSession, conn: MetaConnection, at: dt.datetime) -> int:
    """The connection works again (probe says valid, or the admin reconnected): active, its
    alerts resolved, CONNECTION_CHANGED, and the leads parked while it was dead resumed.
    Returns how many parked leads were resumed."""
    await connection_recovered(
        session,
        model=MetaConnection,
        connection_id=conn.id,
        tenant_id=conn.organizacao_id,
        owner_id=conn.conectado_por,
        connection_type=CONNECTION_TYPE.upper(),
        at=at,
    )
    # connection_recovered closes the generic kinds; these are Lead Ads' own.
    for kind in DEAD_ALERT_KINDS:
        await resolve_alerts(
            session, tenant_id=conn.organizacao_id, kind=kind, at=at, entidade_id=str(conn.id)
        )
    return await resume_parked_leads(session)


async def resume_parked_leads(session: AsyncSession) -> int:
    """Lead jobs parked while the token was dead (leads.py) run now; RLS keeps it to the tenant."""
    resumed = await session.execute(
        update(PendingEvent)
        .where(
            PendingEvent.operacao == "meta_leadgen",
            PendingEvent.status == "pending",
            PendingEvent.proxima_tentativa >= PARKED_UNTIL,
        )
        .values(proxima_tentativa=func.now())
    )
    return int(resumed.rowcount)  # type: ignore[attr-defined]


def dead_token_error(status: str) -> TokenExpired:
    if status == "revoked":
        return TokenRevoked("the Meta authorization was revoked; reconnect Meta")
    return TokenExpired("the Meta token expired; reconnect Meta")


async def call_graph(deps: Deps, tenant_id: uuid.UUID, fn: Callable[[], Awaitable[T]]) -> T:
    """Runs a Graph call for an RPC; a dead token marks the connection (committed even
    though the RPC then fails) and becomes TOKEN_EXPIRED / TOKEN_REVOKED for the caller."""
    try:
        return await fn()
    except ProviderAuthError as exc:
        async with deps.db.unit_of_work(tenant_service(tenant_id)) as session:
            status = await mark_broken(session, tenant_id, exc)
        raise dead_token_error(status) from exc


def tenant_service(tenant_id: uuid.UUID) -> Caller:
    return Caller(role=Role.SERVICE, tenant_id=tenant_id)
