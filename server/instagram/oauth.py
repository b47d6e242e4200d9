"""Connecting Instagram (spec 7.3, 7.6): the Instagram Login URL, the GET callback (code ->
short-lived -> 60-day token, the account, the webhook subscription) and disconnect.

The browser always lands on the frontend with what happened (`status=ok|erro`, `motivo`); a
forged, expired or replayed state is INVALID_ARGUMENT, which the sidecar turns into a
redirect carrying that reason. One professional account belongs to one tenant at a time: an
account live in another tenant is refused without naming it (`ACCOUNT_IN_USE`); two
callbacks racing for one account meet the live-account unique index (migration 0021) and the
second is refused the same way. A member whose `conexao.instagram_direct` grant was revoked
after the login started is refused when the connection would be stored.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import InstagramConnection, User
from server.audit import record_audit
from server.auth.caller import Caller
from server.bootstrap import Deps
from server.errors import ConnectionNotFound
from server.instagram.connection import (
    CONNECTION_TYPE,
    access_token,
    client,
    instagram_app,
    own_connection,
    tenant_service,
    token_context,
)
from server.instagram.errors import BadOAuthState, PlatformNotConfigured
from server.outbox import record_change
from server.outbox.payloads import connection_changed
from server.providers.errors import ProviderError
from server.providers.instagram import Account, authorize_url
from server.resilience.alerts import connection_recovered, resolve_alerts
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
PROVIDER = "instagram"
CALLBACK_PATH = "/api/v1/conexoes/instagram/callback"
DEFAULT_RETURN = "/configuracoes/conexoes/instagram"
PROFESSIONAL = frozenset({"BUSINESS", "MEDIA_CREATOR", "CREATOR"})

MESSAGES = {
    "ACCESS_DENIED": "Voce nao autorizou o acesso ao Instagram. Tente conectar novamente.",
    "STATE_INVALID": "O link de conexao nao e valido. Inicie a conexao novamente.",
    "STATE_EXPIRED": "O link de conexao expirou (10 minutos). Inicie a conexao novamente.",
    "STATE_REUSED": "Este link de conexao ja foi usado. Inicie a conexao novamente.",
    "STATE_BROWSER_MISMATCH": "A conexao foi iniciada em outro navegador. Inicie-a novamente aqui.",
    "CODE_EXCHANGE_FAILED": "Nao foi possivel concluir a conexao com o Instagram. Tente de novo.",
    "PLATFORM_NOT_CONFIGURED": "O aplicativo Instagram da plataforma nao esta configurado.",
    "NOT_PROFESSIONAL_ACCOUNT": "Conecte uma conta Instagram Business ou Creator.",
    "ACCOUNT_IN_USE": "Esta conta Instagram ja esta conectada em outra organizacao.",
    "PERMISSION_NOT_GRANTED": "Um administrador precisa liberar o Instagram Direct para voce.",
}
# The partial unique index on the live connections' instagram_user_id (migration 0021).
_LIVE_ACCOUNT_INDEX = "uq_conexoes_ig_live_account"
_GRANT = "instagram_direct"


def redirect_uri(deps: Deps) -> str:
    return f"{deps.settings.public_url}{CALLBACK_PATH}"


async def auth_url(deps: Deps, caller: Caller, return_to: str) -> AuthUrl:
    tenant, user = caller.require_tenant(), caller.require_user()
    back = validated_return_to(return_to, DEFAULT_RETURN)
    async with deps.db.unit_of_work(caller) as session:
        app = await instagram_app(deps, session)
    callback = redirect_uri(deps)
    # The state is bound to this browser: the callback must come back with its cookie.
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
    url = authorize_url(
        deps.settings.instagram_oauth_url, app_id=app.app_id, redirect_uri=callback, state=token
    )
    return AuthUrl(url, token, state.expires_at, callback, binding)


def _frontend(deps: Deps, return_to: str, status: str, reason: str = "") -> str:
    return outcome_url(
        deps.settings.frontend_url,
        return_to,
        default_return=DEFAULT_RETURN,
        conexao=CONNECTION_TYPE,
        status=status,
        reason=reason,
    )


def _failure(deps: Deps, return_to: str, reason: str) -> CallbackResult:
    return CallbackResult(
        False, _frontend(deps, return_to, "erro", reason), reason, MESSAGES[reason]
    )


async def _held_elsewhere(deps: Deps, account_id: str, actor: Caller) -> bool:
    """Whether another live connection (another tenant's, or another user's here) holds the
    account: webhooks name only the account, so it can belong to one connection."""
    async with deps.db.unit_of_work(actor) as session:
        own = await own_connection(session, actor.require_user())
    async with deps.db.system() as session:
        rows = await session.execute(
            text("SELECT conexao_id FROM app_resolve_instagram_account(:id)"),
            {"id": account_id},
        )
        return any(own is None or conn_id != own.id for (conn_id,) in rows)


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
        raise BadOAuthState(MESSAGES[exc.reason], exc.reason) from exc
    callback, _, return_to = state.redirect_uri.partition("#")
    if not await consume_state(deps.db, state.nonce, state.expires_at):
        raise BadOAuthState(MESSAGES["STATE_REUSED"], "STATE_REUSED")
    actor = tenant_service(state.tenant_id, state.user_id)
    if error or not code:
        async with deps.db.unit_of_work(actor) as session:
            await record_audit(
                session,
                actor,
                "instagram.connect_denied",
                entity_type="conexoes_instagram",
                details={"error": error or "no_code", "error_reason": error_reason},
            )
        return _failure(deps, return_to, "ACCESS_DENIED")
    api = client(deps)
    try:
        async with deps.db.system() as session:
            app = await instagram_app(deps, session)
        short = await api.exchange_code(
            app_id=app.app_id, app_secret=app.app_secret, redirect_uri=callback, code=code
        )
        grant = await api.exchange_long_lived(
            app_secret=app.app_secret, short_token=short.access_token
        )
        account = await api.me(grant.access_token)
    except ProviderError as exc:
        _log.warning("Instagram code exchange failed: %r", exc)
        return _failure(deps, return_to, "CODE_EXCHANGE_FAILED")
    except PlatformNotConfigured:
        return _failure(deps, return_to, "PLATFORM_NOT_CONFIGURED")
    if account.account_type.upper() not in PROFESSIONAL or not account.user_id:
        return _failure(deps, return_to, "NOT_PROFESSIONAL_ACCOUNT")
    if await _held_elsewhere(deps, account.user_id, actor):
        return _failure(deps, return_to, "ACCOUNT_IN_USE")
    try:
        subscribed = await api.subscribe(grant.access_token)
    except ProviderError as exc:
        _log.warning("Instagram webhook subscription failed: %r", exc)
        subscribed = False
    now = deps.clock.now()
    expires = now + dt.timedelta(seconds=grant.expires_in) if grant.expires_in else None
    try:
        async with deps.db.unit_of_work(actor) as session:
            if not await _may_connect(session, actor.require_user()):
                return _failure(deps, return_to, "PERMISSION_NOT_GRANTED")
            conn_id = await _store(
                deps,
                session,
                actor,
                grant.access_token,
                account,
                short.permissions,
                expires,
                now,
                subscribed,
            )
    except IntegrityError as exc:
        if _LIVE_ACCOUNT_INDEX not in str(exc):
            raise
        return _failure(deps, return_to, "ACCOUNT_IN_USE")  # a concurrent callback won it
    return CallbackResult(
        True,
        _frontend(deps, return_to, "ok"),
        connection_id=str(conn_id),
        scopes=short.permissions,
        message=f"Instagram @{account.username} conectado.",
    )


async def _may_connect(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Read again when storing: a grant revoked while the user was at Instagram counts."""
    user = await session.get(User, user_id)
    if user is None or not user.ativo or user.deletado_em is not None:
        return False
    if user.role in ("admin", "super_admin"):
        return True
    return (user.permissoes_conexoes or {}).get(_GRANT) is True


def account_type(value: str) -> str:
    # The contract's two kinds; MEDIA_CREATOR is Instagram's name for a creator account.
    return "CREATOR" if value.upper() in ("MEDIA_CREATOR", "CREATOR") else "BUSINESS"


async def _store(
    deps: Deps,
    session: AsyncSession,
    actor: Caller,
    token: str,
    account: Account,
    permissions: tuple[str, ...],
    expires: dt.datetime | None,
    now: dt.datetime,
    subscribed: bool,
) -> uuid.UUID:
    tenant, user = actor.require_tenant(), actor.require_user()
    values = {
        "instagram_user_id": account.user_id,
        "instagram_username": account.username,
        "instagram_name": account.name,
        "profile_picture_url": account.profile_picture_url or None,
        "account_type": account_type(account.account_type),
        "access_token_encrypted": deps.keyring.encrypt(token, token_context(tenant)),
        "token_type": "long_lived",
        "token_expires_at": expires,
        "permissions": list(permissions) or None,
        "webhook_subscribed": subscribed,
        "status": "active",
        "ultimo_sync": now,
        "ultimo_erro": None,
        "refresh_falhas": 0,
        "refresh_bloqueado_ate": None,
        "conectado_em": now,
        "deletado_em": None,
    }
    # One row per user, kept across reconnections (its history and counters stay).
    prior = await session.scalar(
        select(InstagramConnection).where(InstagramConnection.usuario_id == user).with_for_update()
    )
    stmt = insert(InstagramConnection).values(organizacao_id=tenant, usuario_id=user, **values)
    conn_id: uuid.UUID | None = await session.scalar(
        stmt.on_conflict_do_update(
            index_elements=["organizacao_id", "usuario_id"], set_=values
        ).returning(InstagramConnection.id)
    )
    assert conn_id is not None  # an upsert always returns its row
    if prior is not None and prior.status != "active":
        await connection_recovered(
            session,
            model=InstagramConnection,
            connection_id=conn_id,
            tenant_id=tenant,
            owner_id=user,
            connection_type=CONNECTION_TYPE.upper(),
            at=now,
        )
    if prior is None or prior.deletado_em is not None:
        await record_change(
            session,
            tenant,
            "CONNECTION_CHANGED",
            connection_changed(
                CONNECTION_TYPE.upper(), conn_id, "active", requires_reconnect=False
            ),
            user_id=user,
        )
    for kind in ("instagram_token_expired", "instagram_token_revoked", "token_expiring"):
        await resolve_alerts(session, tenant_id=tenant, kind=kind, at=now, entidade_id=str(conn_id))
    await record_audit(
        session,
        actor,
        "instagram.connected",
        entity_type="conexoes_instagram",
        entity_id=conn_id,
        details={"instagram_user_id": account.user_id, "username": account.username},
    )
    return conn_id


async def disconnect(deps: Deps, caller: Caller) -> InstagramConnection:
    """Unsubscribes the webhook (best effort), forgets the token; conversations stay."""
    user = caller.require_user()
    async with deps.db.unit_of_work(caller) as session:
        conn = await session.scalar(
            select(InstagramConnection).where(
                InstagramConnection.usuario_id == user, InstagramConnection.deletado_em.is_(None)
            )
        )
        if conn is None:
            raise ConnectionNotFound("Instagram is not connected")
        token = access_token(deps, conn) if conn.access_token_encrypted else ""
    if token:
        try:
            await client(deps).unsubscribe(token)
        except ProviderError as exc:  # a dead token cannot unsubscribe; nothing else to do
            _log.info("unsubscribing Instagram account failed: %r", exc)
    async with deps.db.unit_of_work(caller) as session:
        await session.execute(
            update(InstagramConnection)
            .where(InstagramConnection.id == conn.id)
            .values(
                access_token_encrypted="",
                webhook_subscribed=False,
                deletado_em=deps.clock.now(),
            )
        )
        await record_change(
            session,
            conn.organizacao_id,
            "CONNECTION_CHANGED",
            connection_changed(
                CONNECTION_TYPE.upper(), conn.id, "disconnected", requires_reconnect=False
            ),
            user_id=conn.usuario_id,
        )
        await record_audit(
            session,
            caller,
            "instagram.disconnected",
            entity_type="conexoes_instagram",
            entity_id=conn.id,
        )
        fresh = await session.get(InstagramConnection, conn.id, populate_existing=True)
    assert fresh is not None
    return fresh
