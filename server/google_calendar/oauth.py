"""Connecting Google Calendar (spec 5.2.2): the consent URL, the callback (the shared Google
OAuth core up to a verified grant, then this room's row), and disconnect.

Reconnecting keeps the same row (and its calendar choice and history). Disconnecting stops
the push channel first, while the token still works, then revokes the grant at Google.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import GoogleConnection
from server.audit import record_audit
from server.auth.caller import Caller
from server.bootstrap import Deps
from server.errors import ConnectionNotFound
from server.google_calendar import channels, sync
from server.google_calendar.calendars import select_default_calendar
from server.google_calendar.connection import (
    CONEXAO,
    CONNECTION_TYPE,
    TOKEN_KIND,
    keeper,
    own_connection,
)
from server.google_oauth import (
    Authorization,
    Consent,
    ConsentFailed,
    ConsentRequest,
    finish,
    frontend_url,
    revoke_quietly,
    start,
    warn_testing_mode,
)
from server.outbox import record_change
from server.outbox.payloads import connection_changed
from server.resilience.alerts import connection_recovered
from server.security.oauth_flow import CallbackResult

_log = logging.getLogger(__name__)
CALENDAR_SCOPES = (
    "https://www.googleapis.com/auth/calendar",
    "https://www.googleapis.com/auth/calendar.events",
)
SCOPES = (*CALENDAR_SCOPES, "openid", "email", "profile")
CONSENT = ConsentRequest(
    provider="google_calendar",
    conexao=CONEXAO,
    callback_path="/api/v1/conexoes/google/callback",
    scopes=SCOPES,
    required_scopes=CALENDAR_SCOPES,
    default_return="/configuracoes/conexoes/google",
)


async def auth_url(deps: Deps, caller: Caller, return_to: str) -> Consent:
    login_hint = ""
    async with deps.db.unit_of_work(caller) as session:
        prior = await session.scalar(
            select(GoogleConnection.google_user_email).where(
                GoogleConnection.usuario_id == caller.require_user()
            )
        )
        login_hint = prior or ""
    return await start(deps, caller, CONSENT, return_to, login_hint=login_hint)


async def handle_callback(
    deps: Deps, *, code: str, state_token: str, error: str, browser_nonce: str
) -> CallbackResult:
    try:
        grant = await finish(
            deps,
            CONSENT,
            code=code,
            state_token=state_token,
            error=error,
            browser_nonce=browser_nonce,
        )
    except ConsentFailed as failed:
        return CallbackResult(
            False,
            frontend_url(deps, CONEXAO, failed.return_to, "erro", failed.reason),
            failed.reason,
            failed.message,
        )
    conn_id = await _store(deps, grant)
    # Best effort: the calendar can be chosen by hand, the channel is renewed by the
    # scheduler and the fallback sync runs anyway.
    try:
        await select_default_calendar(deps, grant.actor.require_tenant(), conn_id)
        await channels.open_channel(deps, grant.actor.require_tenant(), conn_id)
        await sync.sync_connection(deps, grant.actor.require_tenant(), conn_id)
    except Exception as exc:
        _log.warning("Google Calendar set-up after connecting failed: %r", exc)
    return CallbackResult(
        True,
        frontend_url(deps, CONEXAO, grant.return_to, "ok"),
        connection_id=str(conn_id),
        scopes=grant.granted,
        message="Google Calendar conectado.",
    )


async def _store(deps: Deps, grant: Authorization) -> uuid.UUID:
    actor, tokens, user = grant.actor, grant.tokens, grant.user
    tenant, owner = actor.require_tenant(), actor.require_user()
    now = deps.clock.now()
    tk = keeper(deps)
    values: dict[str, object] = {
        "access_token_encrypted": tk.encrypt("access_token_encrypted", tokens.access_token, tenant),
        "token_expires_at": now + dt.timedelta(seconds=tokens.expires_in),
        "google_user_id": user.id[:50],
        "google_user_email": user.email[:255],
        "google_user_name": user.name[:255],
        "status": "active",
        "ultimo_erro": None,
        "refresh_falhas": 0,
        "refresh_bloqueado_ate": None,
        "deletado_em": None,
        "scopes_concedidos": list(grant.granted),
        "conectado_em": now,
    }
    if tokens.refresh_token:  # kept from the last consent when Google sends none
        values["refresh_token_encrypted"] = tk.encrypt(
            "refresh_token_encrypted", tokens.refresh_token, tenant
        )
    async with deps.db.unit_of_work(actor) as session:
        prior = await session.scalar(
            select(GoogleConnection.status).where(GoogleConnection.usuario_id == owner)
        )
        conn_id = await session.scalar(
            insert(GoogleConnection)
            .values(organizacao_id=tenant, usuario_id=owner, **values)
            .on_conflict_do_update(index_elements=["organizacao_id", "usuario_id"], set_=values)
            .returning(GoogleConnection.id)
        )
        assert conn_id is not None
        if prior is not None and prior != "active":
            await connection_recovered(
                session,
                model=GoogleConnection,
                connection_id=conn_id,
                tenant_id=tenant,
                owner_id=owner,
                connection_type=CONNECTION_TYPE,
                at=now,
            )
        else:
            await _changed(session, tenant, owner, conn_id, "active")
        await warn_testing_mode(session, tokens.refresh_token_expires_in)
        await record_audit(
            session,
            actor,
            "google_calendar.connected",
            entity_type=TOKEN_KIND.table,
            entity_id=conn_id,
            details={"google_user_email": user.email, "scopes": list(grant.granted)},
        )
    return conn_id


async def _changed(
    session: AsyncSession, tenant: uuid.UUID, owner: uuid.UUID, conn_id: uuid.UUID, status: str
) -> None:
    # On the change feed, in the change's transaction: a consumer that was away learns it too.
    await record_change(
        session,
        tenant,
        "CONNECTION_CHANGED",
        connection_changed(CONNECTION_TYPE, conn_id, status, requires_reconnect=False),
        user_id=owner,
    )


async def disconnect(deps: Deps, caller: Caller) -> GoogleConnection:
    """Stops the channel (while the token works), revokes the grant, forgets the tokens."""
    tenant = caller.require_tenant()
    async with deps.db.unit_of_work(caller) as session:
        row = await own_connection(session, caller)
        if row is None:
            raise ConnectionNotFound("Google Calendar is not connected")
        conn_id, channel = row.id, (row.channel_id, row.channel_resource_id)
        stored = keeper(deps).stored(row) if row.access_token_encrypted else None
    if channel[0] and channel[1]:
        await channels.stop_quietly(deps, tenant, conn_id, channel[0], channel[1])
    revoked = False
    if stored is not None:
        revoked = await revoke_quietly(deps, stored.refresh_token or stored.access_token)
    now = deps.clock.now()
    async with deps.db.unit_of_work(caller) as session:
        await session.execute(
            update(GoogleConnection)
            .where(GoogleConnection.id == conn_id)
            .values(
                access_token_encrypted="",
                refresh_token_encrypted=None,
                token_expires_at=None,
                channel_id=None,
                channel_resource_id=None,
                channel_token_encrypted=None,
                channel_expires_at=None,
                sync_token=None,
                sync_status="idle",
                deletado_em=now,
            )
        )
        await _changed(session, tenant, caller.require_user(), conn_id, "disconnected")
        await record_audit(
            session,
            caller,
            "google_calendar.disconnected",
            entity_type=TOKEN_KIND.table,
            entity_id=conn_id,
            details={"revoked_at_google": revoked},
        )
        gone = await session.get(GoogleConnection, conn_id, populate_existing=True)
    assert gone is not None
    return gone
