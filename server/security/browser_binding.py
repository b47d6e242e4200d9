"""Binding an OAuth `state` to the browser that asked for it (DESIGN "OAuth safety").

Without it, a link started by one user and completed in someone else's browser would connect
the victim's provider account to the attacker's CRM user. The auth-url RPC mints a random nonce,
seals its SHA-256 digest into the state and hands the nonce to the browser as an HttpOnly cookie
(the JSON gateway turns the `x-set-cookie` response metadata into `Set-Cookie`). The callback
route of the sidecar forwards that cookie back as `x-oauth-browser-nonce` metadata; the state
is accepted only when the digests match (`STATE_BROWSER_MISMATCH` otherwise).

The cookie is named per connection (`renove_oauth_<conexao>`, the name the callback redirects
carry), so connecting two providers at once in one browser keeps both bindings.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from server.security.oauth_state import STATE_TTL, InvalidOAuthState, OAuthState

COOKIE_PREFIX = "renove_oauth_"
# The API's paths: the callback routes sit under it, the frontend's own pages do not.
COOKIE_PATH = "/api/v1/conexoes"
SET_COOKIE_METADATA = "x-set-cookie"
NONCE_METADATA = "x-oauth-browser-nonce"
MISMATCH = "STATE_BROWSER_MISMATCH"


def cookie_name(conexao: str) -> str:
    return f"{COOKIE_PREFIX}{conexao}"


def nonce_digest(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


@dataclass(frozen=True)
class BrowserBinding:
    """A fresh nonce for one authorization URL: its digest goes in the state, the nonce in
    the browser's cookie."""

    conexao: str
    nonce: str

    @property
    def digest(self) -> str:
        return nonce_digest(self.nonce)

    def set_cookie(self, *, secure: bool) -> str:
        """The Set-Cookie header value. SameSite=Lax: the provider's redirect back to the
        callback is a top-level GET navigation, which Lax cookies accompany."""
        parts = [
            f"{cookie_name(self.conexao)}={self.nonce}",
            f"Path={COOKIE_PATH}",
            f"Max-Age={int(STATE_TTL.total_seconds())}",
            "HttpOnly",
            "SameSite=Lax",
        ]
        if secure:
            parts.append("Secure")
        return "; ".join(parts)

    def metadata(self, *, secure: bool) -> tuple[tuple[str, str], ...]:
        """Response metadata for the auth-url RPC (the gateway sets it as a cookie)."""
        return ((SET_COOKIE_METADATA, self.set_cookie(secure=secure)),)


def new_binding(conexao: str) -> BrowserBinding:
    return BrowserBinding(conexao, secrets.token_urlsafe(24))


def nonce_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    for key, value in metadata or ():
        if key == NONCE_METADATA:
            return value.decode() if isinstance(value, bytes) else value
    return ""


def check_binding(state: OAuthState, nonce: str) -> None:
    """Raises InvalidOAuthState(STATE_BROWSER_MISMATCH) unless `nonce` is the one bound in
    `state`. A state issued without a binding passes (flows that do not bind yet)."""
    if state.browser_digest is None:
        return
    if not nonce or not hmac.compare_digest(nonce_digest(nonce), state.browser_digest):
        raise InvalidOAuthState(
            "this connection link was started in another browser; start it again here", MISMATCH
        )
