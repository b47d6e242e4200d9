"""The Meta connection audiences call Meta with: the tenant's Facebook login (conexoes_meta,
made by the Lead Ads flow with `ads_management`), its user token, and what a refused token
does (mark the connection expired or revoked, alert the admins; the caller reconnects)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import MetaConnection
from server.auth.caller import Caller, Role
from server.bootstrap import Deps
from server.errors import ConnectionNotFound, TokenExpired
from server.providers.errors import ProviderAuthError
from server.resilience.alerts import connection_broken
from server.security.cipher import SecretContext

T = TypeVar("T")
CONNECTION_TYPE = "META_LEAD_ADS"  # the login audiences share with Lead Ads
_REVOKED_SUBCODES = frozenset({458})  # Graph 190/458: the person removed the app


class TokenRevoked(TokenExpired):
    reason = "TOKEN_REVOKED"


def _service(tenant_id: uuid.UUID) -> Caller:
    return Caller(role=Role.SERVICE, tenant_id=tenant_id)


async def active_connection(session: AsyncSession) -> MetaConnection:
    conn: MetaConnection | None = await session.scalar(
        select(MetaConnection).where(MetaConnection.deletado_em.is_(None))
    )
    if conn is None or not conn.access_token_encrypted:
        raise ConnectionNotFound("Meta is not connected; connect it first")
    if conn.status == "revoked":
        raise TokenRevoked("the Meta authorization was revoked; reconnect Meta")
    if conn.status != "active":
        raise TokenExpired("the Meta token expired; reconnect Meta")
    return conn


def user_token(deps: Deps, conn: MetaConnection) -> str:
    context = SecretContext("conexoes_meta", "access_token_encrypted", conn.organizacao_id)
    return deps.keyring.decrypt(conn.access_token_encrypted, context)


async def mark_broken(session: AsyncSession, error: ProviderAuthError) -> str:
    """Marks the tenant's active connection dead (in the caller's unit of work)."""
    status = "revoked" if error.provider_subcode in _REVOKED_SUBCODES else "expired"
    conn = await session.scalar(
        select(MetaConnection)
        .where(MetaConnection.deletado_em.is_(None), MetaConnection.status == "active")
        .with_for_update()
    )
    if conn is not None:
        await connection_broken(
            session,
            model=MetaConnection,
            connection_id=conn.id,
            tenant_id=conn.organizacao_id,
            owner_id=conn.conectado_por,
            connection_type=CONNECTION_TYPE,
            error=f"Graph 190/{error.provider_subcode or '-'}",
            status=status,
            kind=f"meta_token_{status}",
        )
    return status


async def call_meta(deps: Deps, tenant_id: uuid.UUID, fn: Callable[[], Awaitable[T]]) -> T:
    """Runs a Meta call for an RPC; a refused token marks the connection (committed although
    the RPC then fails) and becomes TOKEN_EXPIRED / TOKEN_REVOKED for the caller."""
    try:
        return await fn()
    except ProviderAuthError as exc:
        async with deps.db.unit_of_work(_service(tenant_id)) as session:
            status = await mark_broken(session, exc)
        if status == "revoked":
            raise TokenRevoked("the Meta authorization was revoked; reconnect Meta") from exc
        raise TokenExpired("the Meta token expired; reconnect Meta") from exc
