"""Calendar push channels (events.watch): one per connection on its selected calendar, to an
HTTPS address under CONEXOES_PUBLIC_URL (Google refuses any other), with a random token the
ingress checks. Channels expire and are never renewed by Google: a new one is opened before
the old expires, and only then is the old one stopped, so no change falls between them."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import uuid

from sqlalchemy import select, text, update

from db.models import GoogleConnection
from server.bootstrap import Deps
from server.google_calendar.connection import calendar_client, tenant_service, with_token
from server.providers.google_calendar import WatchChannel
from server.security.cipher import SecretContext

_log = logging.getLogger(__name__)
WEBHOOK_PATH = "/webhooks/google-calendar"
# Renew when the channel has less than this left (the renewal task runs far more often).
RENEW_AHEAD = dt.timedelta(days=1)
TASK = "google_calendar.renew_channels"


def push_address(deps: Deps) -> str | None:
    """Where Google posts notifications; None when the public URL is not HTTPS."""
    url = deps.settings.public_url
    return f"{url}{WEBHOOK_PATH}" if url.startswith("https://") else None


def token_context(tenant: uuid.UUID) -> SecretContext:
    return SecretContext("conexoes_google", "channel_token_encrypted", tenant)


async def open_channel(deps: Deps, tenant: uuid.UUID, connection_id: uuid.UUID) -> bool:
    """Opens a channel on the connection's calendar, then stops the one it replaces.

    Returns False when there is nothing to watch (no calendar, sync off, no HTTPS address).
    Raises ProviderError when Google refuses or cannot be reached.
    """
    address = push_address(deps)
    async with deps.db.unit_of_work(tenant_service(tenant)) as session:
        row = await session.get(GoogleConnection, connection_id)
        if row is None or row.deletado_em is not None:
            return False
        calendar_id, old = row.calendar_id, (row.channel_id, row.channel_resource_id)
        wanted = bool(calendar_id) and row.sincronizar_eventos is not False and address
    if not wanted or calendar_id is None or address is None:
        return False
    channel_id, channel_token = str(uuid.uuid4()), secrets.token_urlsafe(32)
    client = calendar_client(deps)

    async def watch(token: str) -> WatchChannel:
        return await client.watch(
            token, calendar_id, channel_id=channel_id, address=address, channel_token=channel_token
        )

    channel = await with_token(deps, tenant, connection_id, watch)
    async with deps.db.unit_of_work(tenant_service(tenant)) as session:
        await session.execute(
            update(GoogleConnection)
            .where(GoogleConnection.id == connection_id)
            .values(
                channel_id=channel.id,
                channel_resource_id=channel.resource_id,
                channel_token_encrypted=deps.keyring.encrypt(channel_token, token_context(tenant)),
                channel_expires_at=channel.expiration,
            )
        )
    if old[0] and old[1]:
        await stop_quietly(deps, tenant, connection_id, old[0], old[1])
    return True


async def stop_quietly(
    deps: Deps, tenant: uuid.UUID, connection_id: uuid.UUID, channel_id: str, resource_id: str
) -> None:
    """Stops a channel (best effort: an unstopped channel only expires on its own)."""
    client = calendar_client(deps)

    async def stop(token: str) -> None:
        await client.stop(token, channel_id, resource_id)

    try:
        await with_token(deps, tenant, connection_id, stop)
    except Exception as exc:  # a dead token cannot stop anything; the channel expires
        _log.info("stopping Google channel %s failed: %r", channel_id, exc)


async def clear_channel(deps: Deps, tenant: uuid.UUID, connection_id: uuid.UUID) -> None:
    async with deps.db.unit_of_work(tenant_service(tenant)) as session:
        await session.execute(
            update(GoogleConnection)
            .where(GoogleConnection.id == connection_id)
            .values(
                channel_id=None,
                channel_resource_id=None,
                channel_token_encrypted=None,
                channel_expires_at=None,
            )
        )


async def renew_due(deps: Deps) -> dict[uuid.UUID, bool]:
    """Opens a new channel for every active connection whose channel expires within
    RENEW_AHEAD, or that should have one and has none."""
    if push_address(deps) is None:
        return {}
    async with deps.db.system() as session:
        tenants = list((await session.execute(text("SELECT app_list_tenants()"))).scalars())
    horizon = deps.clock.now() + RENEW_AHEAD
    renewed: dict[uuid.UUID, bool] = {}
    for tenant in tenants:
        async with deps.db.unit_of_work(tenant_service(tenant)) as session:
            due = list(
                await session.scalars(
                    select(GoogleConnection.id).where(
                        GoogleConnection.deletado_em.is_(None),
                        GoogleConnection.status == "active",
                        GoogleConnection.calendar_id.is_not(None),
                        GoogleConnection.sincronizar_eventos.is_not(False),
                        GoogleConnection.channel_expires_at.is_(None)
                        | (GoogleConnection.channel_expires_at < horizon),
                    )
                )
            )
        for connection_id in due:
            try:
                renewed[connection_id] = await open_channel(deps, tenant, connection_id)
            except Exception as exc:  # one connection never stops the rest
                _log.warning("renewing the Google channel of %s failed: %r", connection_id, exc)
                renewed[connection_id] = False
    return renewed
