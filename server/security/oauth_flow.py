"""What every OAuth connection's flow shares: the browser-bound state it issues, the single use
of that state at the callback, and the frontend address the browser lands on afterwards.

A room keeps what is its own (the provider's consent URL, the code exchange, what it stores)
and takes these pieces, so a fix to the state's handling reaches every provider at once.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from db.models import OAuthState
from db.uow import Database
from server.security.browser_binding import BrowserBinding, new_binding
from server.security.cipher import Keyring
from server.security.oauth_state import OAuthState as State
from server.security.oauth_state import issue_state


@dataclass(frozen=True)
class AuthUrl:
    """An authorization URL, its state and the cookie that binds it to the browser."""

    url: str
    state: str
    expires_at: dt.datetime
    redirect_uri: str
    binding: BrowserBinding


@dataclass(frozen=True)
class CallbackResult:
    """How a callback ended and where the browser goes next."""

    ok: bool
    redirect_url: str
    reason: str = ""
    message: str = ""
    connection_id: str = ""
    scopes: tuple[str, ...] = ()


def issue_bound_state(
    keyring: Keyring,
    *,
    provider: str,
    connection_type: str,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    callback: str,
    return_to: str,
    now: dt.datetime,
) -> tuple[str, State, BrowserBinding]:
    """A signed state bound to the browser that asked for it.

    The return path rides in the signed state after the callback URL the provider must match;
    the binding's cookie goes to the browser with the URL, and a callback completed in another
    browser (which would store that person's account in this tenant) is refused.
    """
    binding = new_binding(connection_type)
    token, state = issue_state(
        keyring,
        provider=provider,
        tenant_id=tenant_id,
        user_id=user_id,
        redirect_uri=f"{callback}#{return_to}",
        now=now,
        browser_digest=binding.digest,
    )
    return token, state, binding


async def consume_state(db: Database, nonce: str, expires_at: dt.datetime) -> bool:
    """Records the state's nonce; False when it was used before (a replayed callback)."""
    try:
        async with db.system() as session:
            inserted = await session.scalar(
                insert(OAuthState)
                .values(nonce=nonce, expires_at=expires_at, used_at=func.now())
                .on_conflict_do_nothing()
                .returning(OAuthState.nonce)
            )
    except IntegrityError:
        return False
    return inserted is not None


def outcome_url(
    frontend_url: str,
    return_to: str,
    *,
    default_return: str,
    conexao: str,
    status: str,
    reason: str = "",
) -> str:
    """Where the browser lands: the frontend path with `conexao`, `status` and `motivo`.

    `return_to` was validated when the URL was made; anything but a path on our frontend
    (which would be an open redirect) falls back to `default_return` all the same.
    """
    query = {"conexao": conexao, "status": status}
    if reason:
        query["motivo"] = reason
    path = return_to if return_to.startswith("/") and not return_to.startswith("//") else ""
    return f"{frontend_url}{path or default_return}?{urlencode(query)}"
