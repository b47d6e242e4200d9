"""Gmail (spec 6.2): consent through the shared Google OAuth core (gmail.send + the account's
address, offline, PKCE, bound to the browser), the callback that stores the grant encrypted
as the user's e-mail connection, and sending through `users.messages.send` with a token the
shared keeper keeps fresh."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from renove.conexoes.v1 import email_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2

from db.models import EmailConnection, SentEmail
from server.audit import record_audit
from server.auth.caller import Caller
from server.email.connection import (
    CONNECTION_TYPES,
    GMAIL,
    access_token_context,
    refresh_token_context,
    row_of,
)
from server.email.mime import with_bcc
from server.google_oauth import (
    Authorization,
    ConsentFailed,
    ConsentRequest,
    finish,
    frontend_url,
    google_token_kind,
    revoke_quietly,
    secure_cookies,
    start,
    warn_testing_mode,
)
from server.protoconv import timestamp
from server.providers.errors import ProviderAuthError
from server.providers.gmail import GmailClient, GmailSent
from server.resilience.alerts import connection_recovered
from server.tokens import TokenKeeper

if TYPE_CHECKING:
    from server.bootstrap import Deps

_log = logging.getLogger(__name__)
SEND_SCOPE = "https://www.googleapis.com/auth/gmail.send"
EMAIL_SCOPE = "https://www.googleapis.com/auth/userinfo.email"
CONSENT = ConsentRequest(
    provider="gmail",
    conexao="email_gmail",
    callback_path="/api/v1/conexoes/email/google/callback",
    scopes=(SEND_SCOPE, EMAIL_SCOPE),
    required_scopes=(SEND_SCOPE, EMAIL_SCOPE),
    default_return="/configuracoes/conexoes/email",
)
# How often the scheduler refreshes Gmail tokens that are about to expire.
REFRESH_INTERVAL_S = 300.0


@dataclass(frozen=True)
class AuthUrl:
    oauth: resources_pb2.OAuthUrl
    cookie_metadata: tuple[tuple[str, str], ...]


def keeper(deps: Deps) -> TokenKeeper:
    return TokenKeeper(deps, google_token_kind(CONNECTION_TYPES[GMAIL], EmailConnection))


def client(deps: Deps) -> GmailClient:
    return GmailClient(
        deps.http, deps.settings.google_api_url, guard=lambda: deps.breakers.guard("gmail")
    )


async def auth_url(deps: Deps, caller: Caller, request: pb.GetGmailAuthUrlRequest) -> AuthUrl:
    consent = await start(deps, caller, CONSENT, request.return_to)
    oauth = resources_pb2.OAuthUrl(
        auth_url=consent.url,
        state=consent.state,
        scopes=list(consent.scopes),
        redirect_uri=consent.redirect_uri,
    )
    expires = timestamp(consent.expires_at)
    if expires is not None:
        oauth.expires_at.CopyFrom(expires)
    return AuthUrl(oauth, consent.binding.metadata(secure=secure_cookies(deps)))


def _result(ok: bool, url: str, **fields: object) -> pb.HandleGmailOAuthCallbackResponse:
    return pb.HandleGmailOAuthCallbackResponse(
        result=resources_pb2.OAuthCallbackResult(
            sucesso=ok,
            redirect_url=url,
            connection_type=resources_pb2.CONNECTION_TYPE_EMAIL_GMAIL_OAUTH,
            **fields,  # type: ignore[arg-type]
        )
    )


async def callback(
    deps: Deps, request: pb.HandleGmailOAuthCallbackRequest, browser_nonce: str
) -> pb.HandleGmailOAuthCallbackResponse:
    """Raises BadGoogleState (INVALID_ARGUMENT) for a forged, expired, replayed or
    other-browser state; any other failure lands the browser on the frontend with a reason."""
    try:
        grant = await finish(
            deps,
            CONSENT,
            code=request.code,
            state_token=request.state,
            error=request.error,
            browser_nonce=browser_nonce,
        )
    except ConsentFailed as exc:
        url = frontend_url(deps, CONSENT.conexao, exc.return_to, "erro", exc.reason)
        return _result(False, url, motivo_erro=exc.reason, mensagem=exc.message)
    connection_id = await _store(deps, grant)
    return _result(
        True,
        frontend_url(deps, CONSENT.conexao, grant.return_to, "ok"),
        connection_id=str(connection_id),
        mensagem="Gmail conectado.",
        scopes_concedidos=list(grant.granted),
    )


async def _store(deps: Deps, grant: Authorization) -> object:
    actor, tokens, user = grant.actor, grant.tokens, grant.user
    tenant, owner = actor.require_tenant(), actor.require_user()
    now = deps.clock.now()
    async with deps.db.unit_of_work(actor) as tx:
        row = await row_of(tx, owner, live=False, lock=True)
        if row is None:
            row = EmailConnection(organizacao_id=tenant, usuario_id=owner, tipo=GMAIL, email="")
            tx.add(row)
        replaced_smtp = row.tipo != GMAIL and row.deletado_em is None and bool(row.email)
        row.tipo, row.email = GMAIL, user.email
        row.nome_remetente = row.nome_remetente or user.name or None
        row.google_user_id = user.id or None
        row.access_token_encrypted = deps.keyring.encrypt(
            tokens.access_token, access_token_context(tenant)
        )
        if tokens.refresh_token:
            row.refresh_token_encrypted = deps.keyring.encrypt(
                tokens.refresh_token, refresh_token_context(tenant)
            )
        row.token_expires_at = now + dt.timedelta(seconds=tokens.expires_in)
        # One connection per user: Gmail replaces an SMTP password.
        row.smtp_host = row.smtp_user = row.smtp_pass_encrypted = None
        row.smtp_auto_detected = False
        row.status, row.ultimo_erro, row.deletado_em, row.conectado_em = "active", None, None, now
        row.refresh_falhas, row.refresh_bloqueado_ate = 0, None
        await tx.flush()
        await connection_recovered(
            tx,
            model=EmailConnection,
            connection_id=row.id,
            tenant_id=tenant,
            owner_id=owner,
            connection_type=CONNECTION_TYPES[GMAIL],
            at=now,
        )
        await warn_testing_mode(tx, tokens.refresh_token_expires_in)
        await record_audit(
            tx,
            actor,
            "email.gmail_connected",
            entity_type="conexoes_email",
            entity_id=row.id,
            details={"google_user_id": user.id, "replaced_smtp": replaced_smtp},
        )
        return row.id


async def send(deps: Deps, connection: EmailConnection, email: SentEmail) -> GmailSent:
    """Sends the stored message (Bcc added for Gmail to deliver and strip). A 401 on a token
    the keeper thought fresh gets one forced refresh and one more try."""
    tokens = keeper(deps)
    tenant = connection.organizacao_id
    raw = with_bcc(email.mensagem, list(email.destinatarios.get("bcc") or ()))
    thread = email.thread_id or ""
    token = await tokens.access_token(tenant, connection.id)
    try:
        return await client(deps).send(token, raw, thread)
    except ProviderAuthError:
        token = await tokens.refresh(tenant, connection.id, force=True)
        return await client(deps).send(token, raw, thread)


def stored_grant(deps: Deps, row: EmailConnection) -> str:
    """The token that ends a live Gmail grant when revoked (refresh, else access); empty for
    anything else."""
    if row.tipo != GMAIL or row.deletado_em is not None:
        return ""
    tenant = row.organizacao_id
    if row.refresh_token_encrypted:
        return deps.keyring.decrypt(row.refresh_token_encrypted, refresh_token_context(tenant))
    if row.access_token_encrypted:
        return deps.keyring.decrypt(row.access_token_encrypted, access_token_context(tenant))
    return ""


async def revoke(deps: Deps, refresh_token: str) -> None:
    if not await revoke_quietly(deps, refresh_token):
        _log.info("Gmail grant not revoked at Google (already dead or unreachable)")
