"""The Google Calendar room's kernel: "my connection row", its token keeper and calendar
client, and how a call to Google is made with a live token."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import GoogleConnection
from server.auth.caller import Caller, Role
from server.bootstrap import Deps
from server.google_calendar.errors import GoogleNotConnected
from server.google_oauth import google_token_kind
from server.providers.errors import ProviderAuthError
from server.providers.google_calendar import CalendarClient
from server.tokens import TokenKeeper

T = TypeVar("T")
CONNECTION_TYPE = "GOOGLE_CALENDAR"
CONEXAO = "google_calendar"
BREAKER = "google_calendar"
TOKEN_KIND = google_token_kind(CONNECTION_TYPE, GoogleConnection)


def keeper(deps: Deps) -> TokenKeeper:
    return TokenKeeper(deps, TOKEN_KIND)


def calendar_client(deps: Deps) -> CalendarClient:
    return CalendarClient(deps.http, deps.settings.google_api_url)


def tenant_service(tenant: uuid.UUID) -> Caller:
    return Caller(role=Role.SERVICE, tenant_id=tenant)


async def own_connection(session: AsyncSession, caller: Caller) -> GoogleConnection | None:
    """The caller's live connection (a personal connection: even an admin sees their own)."""
    found: GoogleConnection | None = await session.scalar(
        select(GoogleConnection).where(
            GoogleConnection.usuario_id == caller.require_user(),
            GoogleConnection.deletado_em.is_(None),
        )
    )
    return found


async def require_connection(session: AsyncSession, caller: Caller) -> GoogleConnection:
    row = await own_connection(session, caller)
    if row is None:
        raise GoogleNotConnected("Google Calendar is not connected")
    return row


async def with_token(
    deps: Deps, tenant: uuid.UUID, connection_id: uuid.UUID, fn: Callable[[str], Awaitable[T]]
) -> T:
    """`fn(access_token)`; Google's 401 gets one forced refresh and one more try."""
    tokens = keeper(deps)
    token = await tokens.access_token(tenant, connection_id)
    try:
        return await fn(token)
    except ProviderAuthError as exc:
        if exc.status_code != 401:
            raise
    token = await tokens.refresh(tenant, connection_id, force=True)
    return await fn(token)


async def call_google(
    deps: Deps, tenant: uuid.UUID, connection_id: uuid.UUID, fn: Callable[[str], Awaitable[T]]
) -> T:
    """A call to Google under the Calendar circuit breaker: an outage answers an RPC
    `UNAVAILABLE` (its caller retries); in a job of a Calendar operation the worker holds the
    breaker and retries by the operation's policy (server/resilience/operations.py)."""
    async with deps.breakers.guard(BREAKER):
        return await with_token(deps, tenant, connection_id, fn)
