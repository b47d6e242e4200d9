"""Google's half of the token machinery: how a Google refresh is done and what a dead grant
means. Each Google connection builds its TokenKind with `google_token_kind`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from server.bootstrap import Deps
from server.google_oauth.flow import client, google_app
from server.providers.errors import ProviderAuthError
from server.resilience.alerts import raise_alert
from server.tokens import Refreshed, StoredToken, TokenKind

# Apps in "Testing" publishing status get refresh tokens that die after 7 days.
TESTING_LIFETIME = dt.timedelta(days=7)
TESTING_KIND = "google_app_testing_mode"


async def refresh_google(deps: Deps, stored: StoredToken) -> Refreshed:
    app = await google_app(deps)
    assert stored.refresh_token is not None
    tokens = await client(deps).refresh(
        client_id=app.client_id, client_secret=app.client_secret, refresh_token=stored.refresh_token
    )
    return Refreshed(tokens.access_token, tokens.expires_in, tokens.refresh_token)


def dead_status(stored: StoredToken, _: ProviderAuthError, now: dt.datetime) -> str:
    """`expired` when the grant died at the age a Testing app's tokens die, else `revoked`."""
    if stored.connected_at is not None:
        age = now - stored.connected_at
        if (
            TESTING_LIFETIME - dt.timedelta(hours=12)
            <= age
            <= TESTING_LIFETIME + dt.timedelta(days=1)
        ):
            return "expired"
    return "revoked"


def google_token_kind(connection_type: str, model: Any) -> TokenKind:
    return TokenKind(
        connection_type=connection_type,
        model=model,
        refresh=refresh_google,
        dead_status=dead_status,
    )


async def warn_testing_mode(session: AsyncSession, refresh_token_expires_in: int | None) -> None:
    """Google says a refresh token expires (it does so only for apps in Testing status): the
    super admins hear once that every Google connection will die in 7 days until the app is
    published."""
    if refresh_token_expires_in is None:
        return
    days = refresh_token_expires_in / 86400
    await raise_alert(
        session,
        tenant_id=None,
        audience="super_admin",
        kind=TESTING_KIND,
        severity="warning",
        message=(
            "O app Google parece estar em modo de teste: os refresh tokens expiram em "
            f"{days:.0f} dias e as conexoes Google caem. Publique o app no Google Cloud."
        ),
        details={"titulo": "App Google em modo de teste", "entidade_tipo": "platform_credentials"},
        dedupe=False,
    )
