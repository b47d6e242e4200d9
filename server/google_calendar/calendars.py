"""Choosing the calendar (spec 5.2.2 step 3): the calendars the account can write to, the
selected one, and the Meet/sync settings. A new calendar gets a new push channel and a full
sync (the cursor of the old calendar means nothing for the new one)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import update

from db.models import GoogleConnection
from server.audit import record_audit
from server.auth.caller import Caller
from server.bootstrap import Deps
from server.google_calendar import channels
from server.google_calendar.connection import (
    calendar_client,
    call_google,
    require_connection,
    tenant_service,
    with_token,
)
from server.google_calendar.errors import CalendarNotFound
from server.providers.google_calendar import CalendarEntry

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalendarList:
    calendars: list[CalendarEntry]
    selected: str | None
    account_email: str


async def list_calendars(deps: Deps, caller: Caller) -> CalendarList:
    tenant = caller.require_tenant()
    async with deps.db.unit_of_work(caller) as session:
        row = await require_connection(session, caller)
        conn_id, selected, email = row.id, row.calendar_id, row.google_user_email or ""
    client = calendar_client(deps)
    found = await call_google(deps, tenant, conn_id, client.calendar_list)
    return CalendarList(found, selected, email)


async def select_calendar(
    deps: Deps,
    caller: Caller,
    calendar_id: str,
    *,
    criar_google_meet: bool | None,
    sincronizar_eventos: bool | None,
) -> GoogleConnection:
    tenant = caller.require_tenant()
    async with deps.db.unit_of_work(caller) as session:
        row = await require_connection(session, caller)
        conn_id, previous = row.id, row.calendar_id
    writable = await call_google(deps, tenant, conn_id, calendar_client(deps).calendar_list)
    entry = next((c for c in writable if c.id == calendar_id), None)
    if entry is None:
        raise CalendarNotFound("the connected account cannot write to this calendar")
    values: dict[str, object] = {"calendar_id": entry.id, "calendar_name": entry.summary[:255]}
    if criar_google_meet is not None:
        values["criar_google_meet"] = criar_google_meet
    if sincronizar_eventos is not None:
        values["sincronizar_eventos"] = sincronizar_eventos
    moved = entry.id != previous
    if moved:
        values.update(sync_token=None, sync_status="idle", sync_falhas=0, ultimo_sync_erro=None)
    async with deps.db.unit_of_work(caller) as session:
        await session.execute(
            update(GoogleConnection).where(GoogleConnection.id == conn_id).values(**values)
        )
        await record_audit(
            session,
            caller,
            "google_calendar.calendar_selected",
            entity_type="conexoes_google",
            entity_id=conn_id,
            details={k: v for k, v in values.items() if k != "sync_token"},
        )
    if moved or sincronizar_eventos:
        await _watch_and_sync(deps, tenant, conn_id)
    if sincronizar_eventos is False:
        await _unwatch(deps, tenant, conn_id)
    async with deps.db.unit_of_work(caller) as session:
        return await require_connection(session, caller)


async def _watch_and_sync(deps: Deps, tenant: uuid.UUID, conn_id: uuid.UUID) -> None:
    from server.google_calendar import sync  # sync imports nothing of this module

    try:
        await channels.open_channel(deps, tenant, conn_id)
        await sync.sync_connection(deps, tenant, conn_id)
    except Exception as exc:  # recorded in the sync state; the scheduler tries again
        _log.warning("watching/syncing the new Google calendar failed: %r", exc)


async def _unwatch(deps: Deps, tenant: uuid.UUID, conn_id: uuid.UUID) -> None:
    async with deps.db.unit_of_work(tenant_service(tenant)) as session:
        row = await session.get(GoogleConnection, conn_id)
        channel = (row.channel_id, row.channel_resource_id) if row else (None, None)
    if channel[0] and channel[1]:
        await channels.stop_quietly(deps, tenant, conn_id, channel[0], channel[1])
        await channels.clear_channel(deps, tenant, conn_id)


async def select_default_calendar(deps: Deps, tenant: uuid.UUID, conn_id: uuid.UUID) -> None:
    """After connecting: the primary calendar, unless one is selected already."""
    async with deps.db.unit_of_work(tenant_service(tenant)) as session:
        row = await session.get(GoogleConnection, conn_id)
        if row is None or row.calendar_id:
            return
    found = await with_token(deps, tenant, conn_id, calendar_client(deps).calendar_list)
    primary = next((c for c in found if c.primary), None)
    if primary is None:
        return
    async with deps.db.unit_of_work(tenant_service(tenant)) as session:
        await session.execute(
            update(GoogleConnection)
            .where(GoogleConnection.id == conn_id)
            .values(calendar_id=primary.id, calendar_name=primary.summary[:255])
        )
