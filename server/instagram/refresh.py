"""Keeping the 60-day token alive (spec 7.3 step 5; providers contract §6 step 4).

Instagram refreshes a long-lived token that is at least 24 hours old and not expired; the new
one lives 60 days. The scheduler refreshes each active connection once its token has less
than `REFRESH_WHEN_LEFT` to live (so well before day 60, never before 24 h), warns the owner
when a token that could not be refreshed expires within 7 days, and marks a token past its
expiry `expired` (an alert for the owner and the admins). One refresh at a time per connection:
the row is locked for the call (a second caller gets REFRESH_IN_PROGRESS).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from db.models import InstagramConnection
from server.audit import record_audit
from server.auth.caller import Caller
from server.bootstrap import Deps
from server.errors import ConnectionNotFound
from server.instagram.connection import (
    CONNECTION_TYPE,
    access_token,
    client,
    dead_status,
    dead_token_error,
    mark_broken,
    tenant_service,
    token_context,
)
from server.instagram.errors import RefreshInProgress, TokenTooNew
from server.providers.errors import ProviderAuthError, ProviderError
from server.resilience.alerts import raise_alert, resolve_alerts

_log = logging.getLogger(__name__)
TASK = "instagram.token_refresh"
INTERVAL_S = 3600.0
MIN_AGE = dt.timedelta(hours=24)
REFRESH_WHEN_LEFT = dt.timedelta(days=50)
WARN_AHEAD = dt.timedelta(days=7)
EXPIRING_KIND = "token_expiring"


@dataclass(frozen=True)
class Refreshed:
    token_expires_at: dt.datetime | None
    refreshed_at: dt.datetime
    status: str


async def refresh_now(
    deps: Deps, caller: Caller, conn_id: uuid.UUID, *, actor: Caller | None = None
) -> Refreshed:
    """Refreshes one connection's token now (RPC and scheduler)."""
    now = deps.clock.now()
    try:
        async with deps.db.unit_of_work(caller) as tx:
            conn = await tx.scalar(
                select(InstagramConnection)
                .where(InstagramConnection.id == conn_id)
                .with_for_update(nowait=True)
            )
            if conn is None or conn.deletado_em is not None:
                raise ConnectionNotFound("Instagram is not connected")
            if conn.status in ("expired", "revoked"):
                raise dead_token_error(conn.status)
            if conn.token_expires_at is not None and conn.token_expires_at <= now:
                await mark_broken(tx, conn, "expired", "o token expirou (60 dias)")
                return Refreshed(conn.token_expires_at, now, "expired")
            if conn.token_obtido_em is not None and now - conn.token_obtido_em < MIN_AGE:
                raise TokenTooNew(
                    "Instagram refreshes only tokens at least 24 hours old",
                    metadata={"token_obtido_em": conn.token_obtido_em.isoformat()},
                )
            try:
                grant = await client(deps).refresh(access_token(deps, conn))
            except ProviderAuthError as exc:
                status = dead_status(exc)
                await mark_broken(
                    tx, conn, status, f"renovacao recusada (190/{exc.provider_subcode or '-'})"
                )
                return Refreshed(conn.token_expires_at, now, status)
            except ProviderError as exc:
                if "24 hours" in str(exc):
                    raise TokenTooNew(
                        "Instagram refreshes only tokens at least 24 hours old"
                    ) from exc
                raise
            conn.access_token_encrypted = deps.keyring.encrypt(
                grant.access_token, token_context(conn.organizacao_id)
            )
            conn.token_expires_at = now + dt.timedelta(seconds=grant.expires_in or 60 * 86400)
            conn.token_obtido_em = now
            conn.ultimo_sync = now
            conn.refresh_falhas = 0
            await resolve_alerts(
                tx,
                tenant_id=conn.organizacao_id,
                kind=EXPIRING_KIND,
                at=now,
                entidade_id=str(conn.id),
            )
            await record_audit(
                tx,
                actor or caller,
                "instagram.token_refreshed",
                entity_type="conexoes_instagram",
                entity_id=conn.id,
                details={"token_expires_at": conn.token_expires_at.isoformat()},
            )
            return Refreshed(conn.token_expires_at, now, conn.status)
    except DBAPIError as exc:
        if "could not obtain lock" in str(exc) or "LockNotAvailable" in type(exc.orig).__name__:
            raise RefreshInProgress("this token is being refreshed right now") from exc
        raise


async def run_refresh(deps: Deps) -> int:
    """One scheduler pass over every tenant; returns how many tokens were refreshed."""
    async with deps.db.system() as session:
        tenants = list((await session.execute(text("SELECT app_list_tenants()"))).scalars())
    done = 0
    for tenant in tenants:
        try:
            done += await _tenant(deps, tenant)
        except Exception:  # one tenant's trouble never stops the others
            _log.exception("%s of tenant %s failed", TASK, tenant)
    return done


async def _tenant(deps: Deps, tenant: uuid.UUID) -> int:
    now = deps.clock.now()
    service = tenant_service(tenant)
    async with deps.db.unit_of_work(service) as tx:
        rows = list(
            await tx.scalars(
                select(InstagramConnection).where(
                    InstagramConnection.deletado_em.is_(None),
                    InstagramConnection.status == "active",
                )
            )
        )
    done = 0
    for conn in rows:
        expires = conn.token_expires_at
        if expires is None:
            continue
        old_enough = conn.token_obtido_em is None or now - conn.token_obtido_em >= MIN_AGE
        if expires <= now or (old_enough and expires - now <= REFRESH_WHEN_LEFT):
            try:
                result = await refresh_now(deps, service, conn.id)
                done += result.status == "active"
                continue
            except ProviderError as exc:
                _log.warning("Instagram token refresh failed: %r", exc)
            except (RefreshInProgress, TokenTooNew):
                continue
        if expires - now <= WARN_AHEAD:
            await _warn(deps, conn, expires)
    return done


async def _warn(deps: Deps, conn: InstagramConnection, expires: dt.datetime) -> None:
    async with deps.db.unit_of_work(tenant_service(conn.organizacao_id)) as tx:
        await raise_alert(
            tx,
            tenant_id=conn.organizacao_id,
            audience="user",
            usuario_id=conn.usuario_id,
            kind=EXPIRING_KIND,
            severity="warning",
            message=f"O token do Instagram expira em {expires.date().isoformat()}: "
            "reconecte a conta.",
            details={
                "titulo": "Token do Instagram expirando",
                "entidade_tipo": "conexoes_instagram",
                "entidade_id": str(conn.id),
                "connection_type": CONNECTION_TYPE.upper(),
            },
            dedupe=True,
        )
