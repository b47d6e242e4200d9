"""What every Instagram operation needs: the Instagram app credentials, a client behind the
instagram breaker, the caller's connection row and its token, and what to do when Instagram
says a token is dead (mark the connection, alert its owner and the admins)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import InstagramConnection
from server.auth.caller import Caller, Role
from server.bootstrap import Deps
from server.errors import TokenExpired
from server.instagram.errors import InstagramNotConnected, PlatformNotConfigured, TokenRevoked
from server.providers.errors import ProviderAuthError
from server.providers.instagram import InstagramClient
from server.resilience.alerts import connection_broken
from server.security.cipher import SecretContext

CONNECTION_TYPE = "instagram_direct"
BREAKER = "instagram"
# Graph 190 subcodes that mean the person took the access back (app removed, session
# invalidated by a password change or a revoke); 463 is plain expiry.
REVOKED_SUBCODES = frozenset({458, 460})


@dataclass(frozen=True)
class InstagramApp:
    app_id: str
    app_secret: str


def token_context(tenant_id: uuid.UUID) -> SecretContext:
    return SecretContext("conexoes_instagram", "access_token_encrypted", tenant_id)


def client(deps: Deps) -> InstagramClient:
    return InstagramClient(
        deps.http,
        api_url=deps.settings.instagram_api_url,
        graph_url=deps.settings.instagram_graph_url,
        version=deps.settings.meta_graph_version,
        guard=lambda: deps.breakers.guard(BREAKER),
    )


async def instagram_app(deps: Deps, session: AsyncSession) -> InstagramApp:
    """The super admin's Instagram app; FAILED_PRECONDITION until it is set."""
    values = await deps.platform.resolve(session, "instagram")
    if not values.get("app_id") or not values.get("app_secret"):
        raise PlatformNotConfigured("the super admin has not configured the Instagram app yet")
    return InstagramApp(values["app_id"], values["app_secret"])


async def own_connection(session: AsyncSession, user_id: uuid.UUID) -> InstagramConnection | None:
    row: InstagramConnection | None = await session.scalar(
        select(InstagramConnection).where(
            InstagramConnection.usuario_id == user_id, InstagramConnection.deletado_em.is_(None)
        )
    )
    return row


def usable(conn: InstagramConnection | None) -> InstagramConnection:
    """The connection, able to call Instagram: not connected and dead tokens told apart."""
    if conn is None or not conn.access_token_encrypted:
        raise InstagramNotConnected("Instagram is not connected; connect it first")
    if conn.status == "revoked":
        raise TokenRevoked("the Instagram authorization was revoked; reconnect Instagram")
    if conn.status != "active":
        raise TokenExpired("the Instagram token expired; reconnect Instagram")
    return conn


def access_token(deps: Deps, conn: InstagramConnection) -> str:
    return deps.keyring.decrypt(conn.access_token_encrypted, token_context(conn.organizacao_id))


def dead_status(error: ProviderAuthError) -> str:
    return "revoked" if error.provider_subcode in REVOKED_SUBCODES else "expired"


async def mark_broken(
    session: AsyncSession, conn: InstagramConnection, status: str, error: str
) -> None:
    """Marks the connection dead: status, an alert for the owner and the tenant's admins
    (once while open), CONNECTION_CHANGED on the stream."""
    await connection_broken(
        session,
        model=InstagramConnection,
        connection_id=conn.id,
        tenant_id=conn.organizacao_id,
        owner_id=conn.usuario_id,
        connection_type=CONNECTION_TYPE.upper(),
        error=error,
        status=status,
        kind=f"instagram_token_{status}",
    )


async def break_on_auth_error(
    deps: Deps, conn_id: uuid.UUID, tenant_id: uuid.UUID, exc: ProviderAuthError
) -> str:
    """Instagram refused the token: mark the (still active) connection. Returns the status."""
    status = dead_status(exc)
    async with deps.db.unit_of_work(tenant_service(tenant_id)) as session:
        conn = await session.get(InstagramConnection, conn_id, with_for_update=True)
        if conn is not None and conn.status == "active":
            reason = "o acesso foi revogado" if status == "revoked" else "o token expirou"
            await mark_broken(
                session, conn, status, f"{reason} (190/{exc.provider_subcode or '-'})"
            )
    return status


def dead_token_error(status: str) -> TokenExpired:
    if status == "revoked":
        return TokenRevoked("the Instagram authorization was revoked; reconnect Instagram")
    return TokenExpired("the Instagram token expired; reconnect Instagram")


def tenant_service(tenant_id: uuid.UUID, user_id: uuid.UUID | None = None) -> Caller:
    return Caller(role=Role.SERVICE, tenant_id=tenant_id, user_id=user_id)


def days_left(expires_at: dt.datetime | None, now: dt.datetime) -> int:
    if expires_at is None:
        return 0
    return max(0, (expires_at - now).days)
