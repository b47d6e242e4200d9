"""What every Lead Ads operation needs: the tenant's connection and its tokens, the Meta App
credentials, a Graph client behind the meta_graph breaker, and what to do when Meta says a
token is dead (Graph 190: mark the connection, alert the admin, tell the caller to reconnect).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import MetaConnection, MetaPage
from server.auth.caller import Caller, Role
from server.bootstrap import Deps
from server.errors import TokenExpired
from server.meta_leads.errors import MetaNotConnected, PlatformNotConfigured, TokenRevoked
from server.providers.errors import ProviderAuthError
from server.providers.meta_graph import MetaGraphClient
from server.resilience.alerts import raise_alert
from server.security.cipher import SecretContext

T = TypeVar("T")
CONNECTION_TYPE = "meta_lead_ads"
# Graph 190 subcode 458: the person removed the app (revoked); the others mean expired
# (463), password changed (460) or session invalidated (467): reconnecting fixes both.
REVOKED_SUBCODES = frozenset({458})


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
    status = "revoked" if error.provider_subcode in REVOKED_SUBCODES else "expired"
    changed = await session.execute(
        update(MetaConnection)
        .where(MetaConnection.deletado_em.is_(None), MetaConnection.status == "active")
        .values(status=status, ultimo_erro=f"Graph 190/{error.provider_subcode or '-'}")
        .returning(MetaConnection.id)
    )
    conn_id = changed.scalar()
    if conn_id is not None:
        await raise_alert(
            session,
            tenant_id=tenant_id,
            audience="tenant_admin",
            kind=f"meta_token_{status}",
            severity="critical",
            message=(
                "A conexao com o Meta Lead Ads expirou; reconecte para voltar a receber leads."
                if status == "expired"
                else "O acesso ao Meta Lead Ads foi revogado; reconecte para receber leads."
            ),
            details={
                "titulo": "Reconecte o Meta Lead Ads",
                "connection_type": CONNECTION_TYPE,
                "entidade_tipo": "conexoes_meta",
                "entidade_id": str(conn_id),
            },
            dedupe=True,
        )
    return status


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
