"""Signed, encrypted, expiring OAuth ``state`` values.

The state travels through the browser and the provider, so it is sealed with the keyring
(AES-GCM: tamper-proof and unreadable, which matters because it carries the PKCE verifier).
It binds tenant, user, provider and redirect (and, when given, the digest of the browser's
binding cookie, see `server.security.browser_binding`); single use is enforced by the caller
recording ``nonce`` in ``oauth_states`` when the callback consumes it.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from server.security.cipher import DecryptionError, Keyring, SecretContext

STATE_TTL = timedelta(minutes=10)
_CONTEXT = SecretContext(table="oauth_state", column="state", tenant_id=None)


class InvalidOAuthState(Exception):
    """The state is forged, corrupted, expired or meant for another provider."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class OAuthState:
    nonce: str
    provider: str
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    redirect_uri: str
    expires_at: datetime
    code_verifier: str | None = None
    browser_digest: str | None = None


def issue_state(
    keyring: Keyring,
    *,
    provider: str,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    redirect_uri: str,
    now: datetime,
    code_verifier: str | None = None,
    browser_digest: str | None = None,
) -> tuple[str, OAuthState]:
    state = OAuthState(
        nonce=secrets.token_urlsafe(16),
        provider=provider,
        tenant_id=tenant_id,
        user_id=user_id,
        redirect_uri=redirect_uri,
        expires_at=now + STATE_TTL,
        code_verifier=code_verifier,
        browser_digest=browser_digest,
    )
    payload = json.dumps(
        {
            "n": state.nonce,
            "p": provider,
            "t": str(tenant_id),
            "u": str(user_id),
            "r": redirect_uri,
            "e": int(state.expires_at.timestamp()),
            "v": code_verifier,
            "b": browser_digest,
        },
        separators=(",", ":"),
    )
    sealed = keyring.encrypt(payload, _CONTEXT)
    return base64.urlsafe_b64encode(sealed.encode()).decode().rstrip("="), state


def open_state(keyring: Keyring, token: str, *, provider: str, now: datetime) -> OAuthState:
    try:
        sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        data = json.loads(keyring.decrypt(sealed, _CONTEXT))
    except (ValueError, UnicodeDecodeError, DecryptionError) as exc:
        raise InvalidOAuthState("state is not one we issued", "STATE_INVALID") from exc
    if data.get("p") != provider:
        raise InvalidOAuthState("state was issued for another provider", "STATE_INVALID")
    expires_at = datetime.fromtimestamp(int(data["e"]), UTC)
    if now >= expires_at:
        raise InvalidOAuthState("state expired; start the connection again", "STATE_EXPIRED")
    return OAuthState(
        nonce=data["n"],
        provider=data["p"],
        tenant_id=uuid.UUID(data["t"]),
        user_id=uuid.UUID(data["u"]),
        redirect_uri=data["r"],
        expires_at=expires_at,
        code_verifier=data.get("v"),
        browser_digest=data.get("b"),
    )
