"""The Meta connection's health probe (DESIGN "Tokens that stay alive"; issue 5).

Health is asked of Meta, not guessed from the last error: every interval, for each tenant
with a live connection, `debug_token` (with the app token) tells whether the stored user token
still works and when it expires. https://developers.facebook.com/docs/graph-api/reference/debug_token

- invalid (`is_valid` false, or Graph 190): the connection becomes expired/revoked and its
  admins are alerted, unless it is marked already;
- valid after being marked dead: recovered (alerts resolved, parked leads resumed);
- valid but expiring within 7 days: one open `token_expiring` alert. Meta's long-lived user
  tokens cannot be refreshed without the person, so the admin has to reconnect;
- an outage (5xx, timeout, rate limit, breaker open) says nothing about the credential: the
  status is left alone and the circuit breaker deals with it.

Every successful probe records `ultimo_sync`, the token's expiry and its granted scopes, which
is what GetMetaConnection (a cheap read of the row) reports.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import MetaConnection
from server.auth.caller import Caller, Role
from server.bootstrap import Deps
from server.errors import CircuitOpen, PlatformNotConfigured
from server.meta_leads.connection import (
    CONNECTION_TYPE,
    EXPIRING_KIND,
    MetaApp,
    break_connection,
    dead_status,
    graph,
    live_connection,
    mark_recovered,
    meta_app,
    tenant_service,
    user_token,
)
from server.meta_leads.tenants import each_tenant
from server.providers.errors import ProviderAuthError, ProviderError
from server.providers.meta_graph import TokenInfo
from server.resilience.alerts import raise_alert, resolve_alerts

_log = logging.getLogger(__name__)
TASK = "meta_leads.health_probe"
EXPIRY_WARNING = dt.timedelta(days=7)
APP_REJECTED_KIND = "meta_app_rejected"


class Outcome(enum.StrEnum):
    HEALTHY = "healthy"
    EXPIRING = "expiring"  # valid, expires within EXPIRY_WARNING
    RECOVERED = "recovered"
    EXPIRED = "expired"
    REVOKED = "revoked"
    STILL_DEAD = "still_dead"  # invalid and already marked: nothing new to say
    UNREACHABLE = "unreachable"  # outage: status untouched
    NOT_CONNECTED = "not_connected"


async def run_health_probe(deps: Deps) -> dict[uuid.UUID, Outcome]:
    """One pass over every tenant; returns each probed tenant's outcome."""
    try:
        async with deps.db.system() as session:
            app = await meta_app(deps, session)
    except PlatformNotConfigured:
        return {}  # no Meta App, no connections to probe
    return await each_tenant(deps, "Meta health probe", lambda t: probe_tenant(deps, t, app))


async def probe_tenant(deps: Deps, tenant: uuid.UUID, app: MetaApp) -> Outcome:
    caller = tenant_service(tenant)
    async with deps.db.unit_of_work(caller) as session:
        conn = await live_connection(session)
        if conn is None or not conn.access_token_encrypted:
            return Outcome.NOT_CONNECTED
        probed = conn.access_token_encrypted
        token = user_token(deps, conn)
    client = graph(deps, app.version)
    info: TokenInfo | None = None
    subcode: int | None = None
    try:
        info = await client.debug_token(token, app_id=app.app_id, app_secret=app.app_secret)
        subcode = info.error_subcode
    except ProviderAuthError as exc:
        if exc.provider_subcode is None:
            # A 190 on the request itself, with none of the user-token subcodes, rejects the
            # app token: the platform's Meta App credentials, not this tenant's connection.
            await _app_rejected(deps, exc)
            return Outcome.UNREACHABLE
        subcode = exc.provider_subcode
    except (ProviderError, CircuitOpen) as exc:
        _log.warning("Meta health probe of tenant %s: Graph unreachable: %r", tenant, exc)
        return Outcome.UNREACHABLE
    async with deps.db.unit_of_work(caller) as session:
        # Locked, and only if the token probed is still the stored one: a reconnection that
        # landed meanwhile must not be judged by the old token's answer.
        conn = await session.scalar(
            select(MetaConnection)
            .where(
                MetaConnection.deletado_em.is_(None),
                MetaConnection.access_token_encrypted == probed,
            )
            .with_for_update()
        )
        if conn is None:
            return Outcome.NOT_CONNECTED
        if info is None or not info.is_valid:
            return await _dead(session, conn, dead_status(subcode), subcode)
        return await _alive(deps, session, conn, info)


async def _app_rejected(deps: Deps, exc: ProviderAuthError) -> None:
    _log.error("Meta rejected the platform's app token on debug_token: %r", exc)
    # Platform alerts are readable by the platform only: deduplication must see them.
    async with deps.db.unit_of_work(Caller(role=Role.SUPER_ADMIN)) as session:
        await raise_alert(
            session,
            tenant_id=None,
            audience="super_admin",
            kind=APP_REJECTED_KIND,
            severity="critical",
            message="Meta rejected the platform's Meta App credentials (app id / app secret);"
            " Lead Ads connections cannot be checked until they are corrected",
            details={"provider_code": exc.provider_code, "fbtrace_id": exc.fbtrace_id},
            dedupe=True,
        )


async def _dead(
    session: AsyncSession, conn: MetaConnection, status: str, subcode: int | None
) -> Outcome:
    if conn.status != "active":
        return Outcome.STILL_DEAD  # marked already (by a lead job or an earlier probe)
    await break_connection(session, conn, status, subcode)
    return Outcome(status)


async def _alive(
    deps: Deps, session: AsyncSession, conn: MetaConnection, info: TokenInfo
) -> Outcome:
    now = deps.clock.now()
    outcome = Outcome.HEALTHY
    if conn.status != "active":
        await mark_recovered(session, conn, now)
        outcome = Outcome.RECOVERED
    values: dict[str, object] = {"ultimo_sync": now, "scopes_concedidos": list(info.scopes)}
    if info.expires_at is not None:  # absent (0) means the token never expires
        values["token_expires_at"] = info.expires_at
    await session.execute(
        update(MetaConnection).where(MetaConnection.id == conn.id).values(**values)
    )
    if info.expires_at is not None and info.expires_at - now <= EXPIRY_WARNING:
        await _warn_expiring(session, conn, info.expires_at)
        return Outcome.EXPIRING if outcome is Outcome.HEALTHY else outcome
    # The warning's condition cleared (a fresh token): close it.
    await resolve_alerts(
        session,
        tenant_id=conn.organizacao_id,
        kind=EXPIRING_KIND,
        at=now,
        entidade_id=str(conn.id),
    )
    return outcome


async def _warn_expiring(session: AsyncSession, conn: MetaConnection, at: dt.datetime) -> None:
    # Deduplicated: one open warning however many probes run before the admin acts.
    await raise_alert(
        session,
        tenant_id=conn.organizacao_id,
        audience="tenant_admin",
        usuario_id=conn.conectado_por,
        kind=EXPIRING_KIND,
        severity="warning",
        message=(
            f"O acesso ao Meta Lead Ads expira em {at:%d/%m/%Y}; reconecte o Meta para "
            "continuar recebendo leads."
        ),
        details={
            "titulo": "Reconecte o Meta Lead Ads antes que expire",
            "connection_type": CONNECTION_TYPE.upper(),
            "entidade_tipo": "conexoes_meta",
            "entidade_id": str(conn.id),
            "expira_em": at.isoformat(),
        },
        dedupe=True,
    )
