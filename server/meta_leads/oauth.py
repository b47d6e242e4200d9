"""Connecting Meta (spec 2.2 step 1, 2.5): the Facebook Login URL, the GET callback, status
and disconnect.

The browser always lands on the frontend with what happened: success, denied consent and a
failed code exchange come back as a redirect (`status=ok|erro`, `motivo`); a forged, expired
or replayed state is INVALID_ARGUMENT (STATE_INVALID / STATE_EXPIRED / STATE_REUSED, as the
contract says), which the sidecar turns into a redirect carrying that reason.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import LeadAdsForm, MetaConnection, MetaPage
from server.audit import record_audit
from server.auth.caller import Caller, Role
from server.bootstrap import Deps
from server.errors import ConnectionNotFound, PlatformNotConfigured
from server.meta_leads.connection import (
    CONNECTION_TYPE,
    EXPIRING_KIND,
    graph,
    live_connection,
    mark_recovered,
    meta_app,
    page_token,
    page_token_context,
    resume_parked_leads,
    tenant_service,
    user_token_context,
)
from server.meta_leads.errors import BadOAuthState
from server.outbox import record_change
from server.outbox.payloads import connection_changed
from server.providers.errors import ProviderAuthError, ProviderError
from server.providers.meta_graph import TokenInfo, dialog_url
from server.resilience.alerts import resolve_alerts
from server.resilience.jobs import Job, enqueue
from server.resilience.operations import META_REVOKE
from server.security.browser_binding import check_binding
from server.security.oauth_flow import (
    AuthUrl,
    CallbackResult,
    consume_state,
    issue_bound_state,
    outcome_url,
)
from server.security.oauth_state import InvalidOAuthState, open_state
from server.security.return_to import validated_return_to

_log = logging.getLogger(__name__)
PROVIDER = "meta"
CALLBACK_PATH = "/api/v1/conexoes/meta/callback"
DEFAULT_RETURN = "/configuracoes/conexoes/meta"

MESSAGES = {
    "ACCESS_DENIED": "Voce nao autorizou o acesso ao Facebook. Tente conectar novamente.",
    "STATE_INVALID": "O link de conexao nao e valido. Inicie a conexao novamente.",
    "STATE_EXPIRED": "O link de conexao expirou (10 minutos). Inicie a conexao novamente.",
    "STATE_REUSED": "Este link de conexao ja foi usado. Inicie a conexao novamente.",
    "STATE_BROWSER_MISMATCH": (
        "Este link de conexao foi iniciado em outro navegador. Inicie a conexao novamente aqui."
    ),
    "CODE_EXCHANGE_FAILED": "Nao foi possivel concluir a conexao com o Facebook. Tente de novo.",
    "PLATFORM_NOT_CONFIGURED": "O aplicativo Meta da plataforma nao esta configurado.",
}


def redirect_uri(deps: Deps) -> str:
    return f"{deps.settings.public_url}{CALLBACK_PATH}"


async def auth_url(deps: Deps, caller: Caller, return_to: str) -> AuthUrl:
    tenant, user = caller.require_tenant(), caller.require_user()
    back = validated_return_to(return_to, DEFAULT_RETURN)
    async with deps.db.unit_of_work(caller) as session:
        app = await meta_app(deps, session)
    # The return path rides in the signed state, after the callback URL Meta must match.
    callback = redirect_uri(deps)
    # The state is bound to this browser: a link completed in another person's browser would
    # store their Facebook token (and every lead of their pages) in this tenant.
    token, state, binding = issue_bound_state(
        deps.keyring,
        provider=PROVIDER,
        connection_type=CONNECTION_TYPE,
        tenant_id=tenant,
        user_id=user,
        callback=callback,
        return_to=back,
        now=deps.clock.now(),
    )
    url = dialog_url(
        deps.settings.meta_oauth_url,
        app.version,
        app_id=app.app_id,
        redirect_uri=callback,
        state=token,
    )
    return AuthUrl(url, token, state.expires_at, callback, binding)


def _frontend(deps: Deps, return_to: str, status: str, reason: str = "") -> str:
    return outcome_url(
        deps.settings.frontend_url,
        return_to,
        default_return=DEFAULT_RETURN,
        conexao="meta_lead_ads",
        status=status,
        reason=reason,
    )


def _failure(deps: Deps, return_to: str, reason: str) -> CallbackResult:
    return CallbackResult(
        False, _frontend(deps, return_to, "erro", reason), reason, MESSAGES[reason]
    )


async def handle_callback(
    deps: Deps,
    *,
    code: str,
    state_token: str,
    error: str,
    error_reason: str,
    browser_nonce: str,
) -> CallbackResult:
    try:
        state = open_state(deps.keyring, state_token, provider=PROVIDER, now=deps.clock.now())
        # Checked before the state is consumed: the right browser can still finish.
        check_binding(state, browser_nonce)
    except InvalidOAuthState as exc:
        # Nothing in a bad state can be trusted, not even its tenant: a platform entry.
        await _audit_failure(deps, Caller(role=Role.SERVICE), exc.reason, platform=True)
        raise BadOAuthState(MESSAGES[exc.reason], exc.reason) from exc
    callback, _, return_to = state.redirect_uri.partition("#")
    actor = Caller(role=Role.SERVICE, tenant_id=state.tenant_id, user_id=state.user_id)
    if not await consume_state(deps.db, state.nonce, state.expires_at):
        await _audit_failure(deps, actor, "STATE_REUSED")
        raise BadOAuthState(MESSAGES["STATE_REUSED"], "STATE_REUSED")
    if error or not code:
        async with deps.db.unit_of_work(actor) as session:
            await record_audit(
                session,
                actor,
                "meta.connect_denied",
                entity_type="conexoes_meta",
                details={"error": error or "no_code", "error_reason": error_reason},
            )
        return _failure(deps, return_to, "ACCESS_DENIED")
    try:
        async with deps.db.system() as session:
            app = await meta_app(deps, session)
        client = graph(deps, app.version)
        short = await client.exchange_code(
            app_id=app.app_id, app_secret=app.app_secret, redirect_uri=callback, code=code
        )
        grant = await client.exchange_long_lived(
            app_id=app.app_id, app_secret=app.app_secret, token=short.access_token
        )
        me = await client.me(grant.access_token)
        info = await client.debug_token(
            grant.access_token, app_id=app.app_id, app_secret=app.app_secret
        )
    except ProviderError as exc:
        _log.warning("Meta code exchange failed: %r", exc)
        await _audit_failure(deps, actor, "CODE_EXCHANGE_FAILED", error=type(exc).__name__)
        return _failure(deps, return_to, "CODE_EXCHANGE_FAILED")
    except PlatformNotConfigured:
        return _failure(deps, return_to, "PLATFORM_NOT_CONFIGURED")
    now = deps.clock.now()
    expires = info.expires_at or (
        now + dt.timedelta(seconds=grant.expires_in) if grant.expires_in else None
    )
    # Page tokens die with the old user token: the fresh ones are written in the same
    # transaction that releases the leads parked while it was dead, or those leads would run
    # with a dead page token and mark the fresh connection expired again.
    page_tokens = await _fresh_page_tokens(deps, actor, grant.access_token)
    async with deps.db.unit_of_work(actor) as session:
        await _store_page_tokens(deps, session, actor, page_tokens)
        conn_id = await _store(deps, session, actor, grant.access_token, me, info, expires, now)
    return CallbackResult(
        True,
        _frontend(deps, return_to, "ok"),
        connection_id=str(conn_id),
        scopes=info.scopes,
        message="Meta Lead Ads conectado.",
    )


async def _audit_failure(
    deps: Deps, actor: Caller, reason: str, *, error: str | None = None, platform: bool = False
) -> None:
    """An OAuth callback that connected nothing leaves a trace (never the code or state);
    `platform`: a tenant-less entry, for a state that cannot be trusted to name one."""
    details = {"reason": reason, **({"error": error} if error else {})}
    async with deps.db.unit_of_work(actor) as session:
        await record_audit(
            session,
            actor,
            "meta.connect_failed",
            entity_type="conexoes_meta",
            details=details,
            **({"tenant_id": None} if platform else {}),
        )


async def _store(
    deps: Deps,
    session: AsyncSession,
    actor: Caller,
    token: str,
    me: object,
    info: TokenInfo,
    expires: dt.datetime | None,
    now: dt.datetime,
) -> object:
    tenant = actor.require_tenant()
    values = {
        "access_token_encrypted": deps.keyring.encrypt(token, user_token_context(tenant)),
        "token_expires_at": expires,
        "meta_user_id": getattr(me, "id", None),
        "meta_user_name": getattr(me, "name", None),
        "meta_user_email": getattr(me, "email", None),
        "status": "active",
        "ultimo_sync": now,
        "ultimo_erro": None,
        "refresh_falhas": 0,
        "deletado_em": None,
        "scopes_concedidos": list(info.scopes),
        "conectado_por": actor.user_id,
    }
    # One row per tenant, kept across reconnections (DESIGN "Tokens that stay alive").
    prior = await session.scalar(select(MetaConnection.status).with_for_update())
    stmt = insert(MetaConnection).values(organizacao_id=tenant, **values)
    conn_id = await session.scalar(
        stmt.on_conflict_do_update(index_elements=["organizacao_id"], set_=values).returning(
            MetaConnection.id
        )
    )
    row = await session.get(MetaConnection, conn_id, populate_existing=True)
    assert row is not None
    if prior is not None and prior != "active":
        # Reconnecting is the cure the alerts asked for: they close, watchers hear of it and
        # the leads parked while the token was dead run now.
        resumed = await mark_recovered(session, row, now)
    else:
        resumed = await resume_parked_leads(session)
        await resolve_alerts(
            session, tenant_id=tenant, kind=EXPIRING_KIND, at=now, entidade_id=str(conn_id)
        )
        if prior is None:
            await record_change(
                session,
                tenant,
                "CONNECTION_CHANGED",
                connection_changed(
                    CONNECTION_TYPE.upper(), row.id, "active", requires_reconnect=False
                ),
                user_id=actor.user_id,
            )
    await record_audit(
        session,
        actor,
        "meta.connected",
        entity_type="conexoes_meta",
        entity_id=conn_id,
        details={
            "meta_user_id": getattr(me, "id", None),
            "scopes": list(info.scopes),
            "leads_resumed": resumed,
        },
    )
    return conn_id


async def _fresh_page_tokens(deps: Deps, actor: Caller, token: str) -> dict[str, str]:
    """The new page tokens of the pages we hold, re-subscribed (best effort; a page can be
    selected again by hand). Returns page id -> page token."""
    async with deps.db.unit_of_work(actor) as session:
        held = set(await session.scalars(select(MetaPage.page_id).where(MetaPage.ativo.is_(True))))
    if not held:
        return {}
    client = graph(deps)
    fresh: dict[str, str] = {}
    try:
        for account in await client.accounts(token):
            if account.id in held:
                await client.subscribe_leadgen(account.id, account.access_token)
                fresh[account.id] = account.access_token
    except ProviderError as exc:
        _log.warning("refreshing Meta page tokens failed: %r", exc)
        return {}
    return fresh


async def _store_page_tokens(
    deps: Deps, session: AsyncSession, actor: Caller, tokens: dict[str, str]
) -> None:
    tenant = actor.require_tenant()
    for page_id, page_access_token in tokens.items():
        await session.execute(
            update(MetaPage)
            .where(MetaPage.page_id == page_id, MetaPage.ativo.is_(True))
            .values(
                page_access_token_encrypted=deps.keyring.encrypt(
                    page_access_token, page_token_context(tenant)
                )
            )
        )


async def disconnect(deps: Deps, caller: Caller) -> MetaConnection:
    """Unsubscribes the pages (best effort), deletes the tokens, deactivates pages and
    mappings (kept for history)."""
    async with deps.db.unit_of_work(caller) as session:
        conn = await session.scalar(
            select(MetaConnection).where(MetaConnection.deletado_em.is_(None))
        )
        if conn is None:
            raise ConnectionNotFound("Meta is not connected")
        pages = list(await session.scalars(select(MetaPage).where(MetaPage.ativo.is_(True))))
        tokens = [(p.page_id, page_token(deps, p)) for p in pages if p.page_access_token_encrypted]
    client = graph(deps)
    for page_id, token in tokens:
        try:
            await client.unsubscribe(page_id, token)
        except ProviderError as exc:  # a dead token cannot unsubscribe; nothing else to do
            _log.info("unsubscribing page %s failed: %r", page_id, exc)
    async with deps.db.unit_of_work(caller) as session:
        now = deps.clock.now()
        await session.execute(
            update(MetaConnection)
            .where(MetaConnection.id == conn.id)
            .values(access_token_encrypted="", refresh_token_encrypted=None, deletado_em=now)
        )
        await session.execute(
            update(MetaPage).values(ativo=False, page_access_token_encrypted=None)
        )
        await session.execute(
            update(LeadAdsForm).where(LeadAdsForm.deletado_em.is_(None)).values(ativo=False)
        )
        if conn.access_token_encrypted:
            # The job carries the token as stored (encrypted, bound to this tenant): the row
            # forgets it now, Meta forgets the grant when the job runs.
            await enqueue(
                session,
                tenant_id=conn.organizacao_id,
                operation=META_REVOKE,
                payload={"token_cifrado": conn.access_token_encrypted},
                idempotency_key=f"{META_REVOKE.name}:{conn.id}:{now.isoformat()}",
                destino="me/permissions",
            )
        await record_audit(
            session, caller, "meta.disconnected", entity_type="conexoes_meta", entity_id=conn.id
        )
        await record_change(
            session,
            conn.organizacao_id,
            "CONNECTION_CHANGED",
            connection_changed(
                CONNECTION_TYPE.upper(), conn.id, "disconnected", requires_reconnect=False
            ),
            user_id=conn.conectado_por,
        )
        refreshed = await session.scalar(select(MetaConnection).where(MetaConnection.id == conn.id))
    assert refreshed is not None
    return refreshed


async def revoke_at_meta(deps: Deps, job: Job) -> None:
    """The META_REVOKE job: `DELETE /me/permissions` with the disconnected token. A token
    Meta already refuses has nothing left to revoke; other failures are retried."""
    async with deps.db.unit_of_work(tenant_service(job.tenant_id)) as session:
        conn = await live_connection(session)
    if conn is not None:
        # Reconnected since: revoking now would remove the grant the new connection uses.
        _log.info("Meta reconnected before the revoke ran; the grant stays")
        return
    token = deps.keyring.decrypt(
        str(job.payload["token_cifrado"]), user_token_context(job.tenant_id)
    )
    try:
        await graph(deps).revoke_permissions(token)
    except ProviderAuthError as exc:
        _log.info("Meta token already dead at disconnect, nothing to revoke: %r", exc)
