"""The Google OAuth flow every Google connection shares (Calendar, Gmail): the consent URL and
the callback, up to a verified grant. Storing the grant is the room's business.

    start()  -> consent URL (offline, consent, include_granted_scopes, PKCE S256) + a state
                that seals tenant, user, return path, the PKCE verifier and the browser binding
    finish() -> opens the state, checks the browser binding, consumes the state once, exchanges
                the code with the verifier, checks the granted scopes (granular consent) and
                reads the account's identity
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from urllib.parse import urlencode

from server.auth.caller import Caller, Role
from server.bootstrap import Deps
from server.google_oauth.errors import BadGoogleState, ConsentFailed, GooglePlatformNotConfigured
from server.providers.errors import ProviderError
from server.providers.google_oauth import (
    GoogleOAuthClient,
    GoogleTokens,
    GoogleUser,
    Pkce,
    authorization_url,
    scope_set,
)
from server.security.browser_binding import BrowserBinding, check_binding, new_binding
from server.security.oauth_flow import consume_state
from server.security.oauth_state import InvalidOAuthState, issue_state, open_state
from server.security.return_to import validated_return_to

_log = logging.getLogger(__name__)
PLATFORM_PROVIDER = "google"


@dataclass(frozen=True)
class GoogleApp:
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class ConsentRequest:
    """What a room asks for: its state provider name, its connection name (the frontend's
    `conexao`, also the binding cookie's), its callback path and scopes."""

    provider: str
    conexao: str
    callback_path: str
    scopes: tuple[str, ...]
    required_scopes: tuple[str, ...]
    default_return: str


@dataclass(frozen=True)
class Consent:
    url: str
    state: str
    expires_at: dt.datetime
    redirect_uri: str
    scopes: tuple[str, ...]
    binding: BrowserBinding


@dataclass(frozen=True)
class Authorization:
    """A verified grant: who asked (from the state) and what Google gave."""

    actor: Caller
    return_to: str
    tokens: GoogleTokens
    user: GoogleUser
    granted: tuple[str, ...]


async def google_app(deps: Deps) -> GoogleApp:
    values = await deps.platform.current(deps.db, PLATFORM_PROVIDER)
    client_id, secret = values.get("client_id", ""), values.get("client_secret", "")
    if not client_id or not secret:
        raise GooglePlatformNotConfigured("the super admin has not set the Google App")
    return GoogleApp(client_id, secret)


def client(deps: Deps) -> GoogleOAuthClient:
    return GoogleOAuthClient(
        deps.http, token_url=deps.settings.google_token_url, api_url=deps.settings.google_api_url
    )


def redirect_uri(deps: Deps, request: ConsentRequest) -> str:
    return f"{deps.settings.public_url}{request.callback_path}"


def safe_return(return_to: str, default: str) -> str:
    # Only a path on our frontend: an absolute URL here would be an open redirect.
    if not return_to.startswith("/") or return_to.startswith("//"):
        return default
    return return_to


def frontend_url(deps: Deps, conexao: str, return_to: str, status: str, reason: str = "") -> str:
    query = {"conexao": conexao, "status": status}
    if reason:
        query["motivo"] = reason
    return f"{deps.settings.frontend_url}{return_to}?{urlencode(query)}"


async def start(
    deps: Deps, caller: Caller, request: ConsentRequest, return_to: str, login_hint: str = ""
) -> Consent:
    back = validated_return_to(return_to, request.default_return)
    app = await google_app(deps)
    pkce = Pkce.new()
    binding = new_binding(request.conexao)
    callback = redirect_uri(deps, request)
    token, state = issue_state(
        deps.keyring,
        provider=request.provider,
        tenant_id=caller.require_tenant(),
        user_id=caller.require_user(),
        # The return path rides in the sealed state, after the callback URL Google must match.
        redirect_uri=f"{callback}#{back}",
        now=deps.clock.now(),
        code_verifier=pkce.verifier,
        browser_digest=binding.digest,
    )
    url = authorization_url(
        deps.settings.google_oauth_url,
        client_id=app.client_id,
        redirect_uri=callback,
        scopes=request.scopes,
        state=token,
        pkce=pkce,
        login_hint=login_hint or None,
    )
    return Consent(url, token, state.expires_at, callback, request.scopes, binding)


async def finish(
    deps: Deps,
    request: ConsentRequest,
    *,
    code: str,
    state_token: str,
    error: str,
    browser_nonce: str,
) -> Authorization:
    """The callback up to a verified grant.

    Raises:
        BadGoogleState: forged, expired, replayed, or completed in another browser (nothing
            is consumed unless the browser matches).
        ConsentFailed: denied, scopes missing (the partial grant is revoked), exchange failed.
    """
    try:
        state = open_state(
            deps.keyring, state_token, provider=request.provider, now=deps.clock.now()
        )
        check_binding(state, browser_nonce)
    except InvalidOAuthState as exc:
        raise BadGoogleState(exc.reason) from exc
    callback, _, return_to = state.redirect_uri.partition("#")
    if not await consume_state(deps.db, state.nonce, state.expires_at):
        raise BadGoogleState("STATE_REUSED")
    actor = Caller(role=Role.SERVICE, tenant_id=state.tenant_id, user_id=state.user_id)
    if error or not code:
        raise ConsentFailed("ACCESS_DENIED", return_to)
    try:
        app = await google_app(deps)
    except GooglePlatformNotConfigured as exc:
        raise ConsentFailed("PLATFORM_NOT_CONFIGURED", return_to) from exc
    google = client(deps)
    try:
        tokens = await google.exchange_code(
            client_id=app.client_id,
            client_secret=app.client_secret,
            code=code,
            redirect_uri=callback,
            verifier=state.code_verifier or "",
        )
    except ProviderError as exc:
        _log.warning("Google code exchange failed: %r", exc)
        raise ConsentFailed("CODE_EXCHANGE_FAILED", return_to) from exc
    missing = scope_set(request.required_scopes) - scope_set(tokens.scopes)
    if missing:
        # Granular consent: the user unticked something we need. Keep nothing of it.
        await revoke_quietly(deps, tokens.refresh_token or tokens.access_token)
        _log.info("Google grant without %s", sorted(missing))
        raise ConsentFailed("MISSING_SCOPES", return_to)
    try:
        user = await google.userinfo(tokens.access_token)
    except ProviderError as exc:
        _log.warning("Google userinfo failed: %r", exc)
        raise ConsentFailed("CODE_EXCHANGE_FAILED", return_to) from exc
    return Authorization(actor, return_to, tokens, user, tokens.scopes)


async def revoke_quietly(deps: Deps, token: str) -> bool:
    """Revokes at Google; False when Google refused or could not be reached (a token that is
    already dead cannot be revoked, and disconnecting must not wait on Google)."""
    if not token:
        return False
    try:
        await client(deps).revoke(token)
    except ProviderError as exc:
        _log.info("Google revoke failed: %r", exc)
        return False
    return True
