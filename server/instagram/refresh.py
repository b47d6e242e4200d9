"""Keeping the 60-day token alive (spec 7.3 step 5; providers contract §6 step 4) on the shared
token machinery (`server.tokens`): one refresh at a time per connection, cooldowns after
outages, a refused token marks the connection and alerts its owner, recovery is announced.

Instagram refreshes a long-lived token that is at least 24 hours old and not expired, and the
new one lives 60 days; the token itself is what the refresh call consumes. A token's age is
read from its expiry (every long-lived token is issued for 60 days), so the scheduler
refreshes once fewer than `REFRESH_WHEN_LEFT` days remain (well after 24 h, well before day
60). It also warns the owner when a token that could not be refreshed expires within 7 days,
and marks a token past its expiry `expired` (an alert for the owner and the admins).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import select, text

from db.models import InstagramConnection
from server.audit import record_audit
from server.auth.caller import Caller
from server.bootstrap import Deps
from server.errors import ConnectionNotFound, TokenExpired
from server.instagram.connection import (
    CONNECTION_TYPE,
    client,
    dead_status,
    dead_token_error,
    mark_broken,
    tenant_service,
)
from server.instagram.errors import RefreshInProgress, TokenTooNew
from server.providers.errors import ProviderAuthError, ProviderError
from server.resilience.alerts import raise_alert, resolve_alerts
from server.tokens import Refreshed as Grant
from server.tokens import StoredToken, TokenKeeper, TokenKind

_log = logging.getLogger(__name__)
TASK = "instagram.token_refresh"
INTERVAL_S = 3600.0
LIFETIME = dt.timedelta(days=60)
MIN_AGE = dt.timedelta(hours=24)
REFRESH_WHEN_LEFT = dt.timedelta(days=50)
WARN_AHEAD = dt.timedelta(days=7)
EXPIRING_KIND = "token_expiring"


async def _refresh(deps: Deps, stored: StoredToken) -> Grant:
    grant = await client(deps).refresh(stored.refresh_token or stored.access_token)
    return Grant(grant.access_token, grant.expires_in or int(LIFETIME.total_seconds()))


def _dead(_: StoredToken, exc: ProviderAuthError, __: dt.datetime) -> str:
    return dead_status(exc)


def _is_dead(exc: ProviderError) -> bool:
    # Graph 190 (and 102, session): this token will never work again; reconnect.
    return isinstance(exc, ProviderAuthError) and str(exc.provider_code) in ("190", "102")


KIND = TokenKind(
    connection_type=CONNECTION_TYPE.upper(),
    model=InstagramConnection,
    refresh=_refresh,
    dead_status=_dead,
    is_dead=_is_dead,
    refresh_column="access_token_encrypted",
    ahead_window=REFRESH_WHEN_LEFT,
)


def keeper(deps: Deps) -> TokenKeeper:
    return TokenKeeper(deps, KIND)


def too_new(expires_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Issued less than 24 h ago: more than 59 of its 60 days left."""
    return expires_at is not None and expires_at - now > LIFETIME - MIN_AGE


@dataclass(frozen=True)
class Refreshed:
    token_expires_at: dt.datetime | None
    refreshed_at: dt.datetime
    status: str


async def refresh_now(deps: Deps, caller: Caller, conn_id: uuid.UUID) -> Refreshed:
    """Refreshes one connection's token now (RefreshInstagramToken).

    Raises:
        ConnectionNotFound; TokenExpired / TokenRevoked (reconnect); TokenTooNew;
        RefreshInProgress (another refresh of it is running); ProviderError (outage).
    """
    now = deps.clock.now()
    async with deps.db.unit_of_work(caller) as tx:
        conn = await tx.get(InstagramConnection, conn_id, with_for_update=True)
        if conn is None or conn.deletado_em is not None:
            raise ConnectionNotFound("Instagram is not connected")
        tenant, status, expires = conn.organizacao_id, conn.status, conn.token_expires_at
        if status == "active" and expires is not None and expires <= now:
            await mark_broken(tx, conn, "expired", "o token expirou (60 dias)")
            status = "expired"
    if status in ("expired", "revoked"):
        raise dead_token_error(status)
    if too_new(expires, now):
        raise TokenTooNew("Instagram refreshes only tokens at least 24 hours old")
    async with deps.db.system() as lock:
        # Held while the refresh runs: a second caller is told, not queued behind it.
        got = await lock.scalar(
            text("SELECT pg_try_advisory_xact_lock(hashtextextended(:k, 0))"),
            {"k": f"instagram_refresh_rpc:{conn_id}"},
        )
        if not got:
            raise RefreshInProgress("this token is being refreshed right now")
        # A refused token: the keeper marked the connection; its status says which.
        with contextlib.suppress(TokenExpired):
            await keeper(deps).refresh(tenant, conn_id, force=True)
    async with deps.db.unit_of_work(caller) as tx:
        row = await tx.get(InstagramConnection, conn_id)
        assert row is not None
        if row.status in ("expired", "revoked"):
            raise dead_token_error(row.status)
        await record_audit(
            tx,
            caller,
            "instagram.token_refreshed",
            entity_type="conexoes_instagram",
            entity_id=row.id,
            details={"token_expires_at": str(row.token_expires_at)},
        )
        await resolve_alerts(
            tx, tenant_id=tenant, kind=EXPIRING_KIND, at=now, entidade_id=str(row.id)
        )
        return Refreshed(row.token_expires_at, now, row.status)


async def run_refresh(deps: Deps) -> int:
    """One scheduler pass: the shared keeper refreshes what is due, then expired tokens are
    marked and soon-expiring ones warned. Returns how many tokens were refreshed."""
    outcomes = await keeper(deps).refresh_due()
    async with deps.db.system() as session:
        tenants = list((await session.execute(text("SELECT app_list_tenants()"))).scalars())
    for tenant in tenants:
        try:
            await _expiry_pass(deps, tenant)
        except Exception:  # one tenant's trouble never stops the others
            _log.exception("%s of tenant %s failed", TASK, tenant)
    return sum(1 for outcome in outcomes.values() if outcome == "refreshed")


async def _expiry_pass(deps: Deps, tenant: uuid.UUID) -> None:
    now = deps.clock.now()
    async with deps.db.unit_of_work(tenant_service(tenant)) as tx:
        rows = list(
            await tx.scalars(
                select(InstagramConnection)
                .where(
                    InstagramConnection.deletado_em.is_(None),
                    InstagramConnection.status.in_(("active", "error")),
                    InstagramConnection.token_expires_at < now + WARN_AHEAD,
                )
                .with_for_update()
            )
        )
        for conn in rows:
            expires = conn.token_expires_at
            assert expires is not None
            if expires <= now:
                await mark_broken(tx, conn, "expired", "o token expirou (60 dias)")
                continue
            await raise_alert(
                tx,
                tenant_id=tenant,
                audience="user",
                usuario_id=conn.usuario_id,
                kind=EXPIRING_KIND,
                severity="warning",
                message=f"O token do Instagram expira em {expires.date().isoformat()} e nao "
                "pode ser renovado: reconecte a conta.",
                details={
                    "titulo": "Token do Instagram expirando",
                    "entidade_tipo": "conexoes_instagram",
                    "entidade_id": str(conn.id),
                    "connection_type": CONNECTION_TYPE.upper(),
                },
                dedupe=True,
            )
