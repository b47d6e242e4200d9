"""Two-way sync, Google -> CRM: what changed in the calendar (a push notification, or the
periodic fallback when notifications stop) is read with the stored sync token, and each
change to an event linked to a CRM meeting updates the meeting and goes out on the change
feed (CALENDAR_EVENT_CHANGED). A 410 (sync token expired) discards the token and runs a
full sync. Sync state per connection: status, cursor, last success, failures.

One sync at a time per connection (an advisory lock held for its duration): concurrent
notifications queue behind it and then find little or nothing new.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import GoogleConnection, Meeting
from server.bootstrap import Deps
from server.errors import DomainError
from server.events import Event, publish
from server.google_calendar.connection import calendar_client, tenant_service, with_token
from server.providers.google_calendar import CalendarClient, EventsPage, SyncTokenGone
from server.security.redaction import redact

_log = logging.getLogger(__name__)
FALLBACK_TASK = "google_calendar.fallback_sync"
# A connection not synced for this long gets a sync from the fallback task.
STALE_AFTER = dt.timedelta(minutes=15)
_MAX_PAGES = 100


def parse_time(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def event_time(part: object) -> dt.datetime | None:
    return parse_time(part.get("dateTime")) if isinstance(part, Mapping) else None


def attendees_of(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"email": str(a.get("email", "")), "response_status": str(a.get("responseStatus", ""))}
        for a in event.get("attendees") or ()
        if isinstance(a, Mapping)
    ]


def meet_link(event: Mapping[str, Any]) -> str | None:
    link = event.get("hangoutLink")
    if link:
        return str(link)
    for entry in (event.get("conferenceData") or {}).get("entryPoints") or ():
        if entry.get("entryPointType") == "video" and entry.get("uri"):
            return str(entry["uri"])
    return None


async def apply_change(
    session: AsyncSession, tenant: uuid.UUID, event: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Applies one Google event to its CRM meeting; returns what changed (None: nothing)."""
    event_id = str(event.get("id") or "")
    meeting = await session.scalar(
        select(Meeting).where(Meeting.google_event_id == event_id).with_for_update()
    )
    if meeting is None:
        return None
    updated = parse_time(event.get("updated"))
    if updated and meeting.google_atualizado_em and updated <= meeting.google_atualizado_em:
        return None  # an older view of the event than the one applied
    changes: dict[str, Any] = {}
    if event.get("status") == "cancelled":
        if meeting.status != "cancelled":
            changes["status"] = "cancelled"
    else:
        start, end = event_time(event.get("start")), event_time(event.get("end"))
        if start and start != meeting.inicio:
            changes["inicio"] = start
        if end and end != meeting.fim:
            changes["fim"] = end
        summary = event.get("summary")
        if summary and summary != meeting.titulo:
            changes["titulo"] = str(summary)[:255]
        people = attendees_of(event)
        if people and people != meeting.participantes:
            changes["participantes"] = people
        link = meet_link(event)
        if link and link != meeting.google_meet_link:
            changes["google_meet_link"] = link
    await session.execute(
        update(Meeting)
        .where(Meeting.id == meeting.id)
        .values(google_atualizado_em=updated or meeting.google_atualizado_em, **changes)
    )
    if not changes:
        return None
    declined = [
        p["email"] for p in changes.get("participantes", []) if p["response_status"] == "declined"
    ]
    data = {
        "meeting_id": str(meeting.id),
        "google_event_id": event_id,
        "origem": "google",
        "mudancas": sorted(changes),
        "status": changes.get("status", meeting.status),
        "inicio": (changes.get("inicio") or meeting.inicio).isoformat(),
        "fim": (changes.get("fim") or meeting.fim).isoformat(),
        "recusaram": declined,
    }
    await publish(session, Event("CALENDAR_EVENT_CHANGED", tenant, meeting.usuario_id, data))
    return data


async def sync_connection(deps: Deps, tenant: uuid.UUID, connection_id: uuid.UUID) -> int:
    """Runs one incremental sync (a full one without a cursor or after a 410); returns how
    many meetings changed. Raises the provider's error after recording it."""
    try:
        async with deps.db.unit_of_work(tenant_service(tenant)) as session:
            await session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                {"k": f"google_calendar.sync:{connection_id}"},
            )
            row = await session.get(GoogleConnection, connection_id, populate_existing=True)
            if row is None or row.deletado_em is not None or not row.calendar_id:
                return 0
            if row.status != "active":
                return 0  # a dead token cannot read; reconnecting starts over
            changed = await _run(deps, session, tenant, row)
            await session.execute(
                update(GoogleConnection)
                .where(GoogleConnection.id == connection_id)
                .values(
                    sync_status="ok",
                    sync_falhas=0,
                    ultimo_sync_erro=None,
                    ultimo_sync=deps.clock.now(),
                )
            )
            return changed
    except DomainError as exc:
        await _record_failure(deps, tenant, connection_id, exc)
        raise


async def _run(deps: Deps, session: AsyncSession, tenant: uuid.UUID, row: GoogleConnection) -> int:
    client = calendar_client(deps)
    calendar_id = row.calendar_id
    assert calendar_id is not None
    cursor = row.sync_token
    changed = 0
    page_token: str | None = None
    for _ in range(_MAX_PAGES):
        try:
            page = await with_token(
                deps, tenant, row.id, _lister(client, calendar_id, cursor, page_token)
            )
        except SyncTokenGone:
            _log.info("Google sync token of %s expired: full sync", row.id)
            cursor, page_token = None, None
            continue
        for item in page.items:
            if await apply_change(session, tenant, item) is not None:
                changed += 1
        if page.next_page_token:
            page_token = page.next_page_token
            continue
        if page.next_sync_token:
            await session.execute(
                update(GoogleConnection)
                .where(GoogleConnection.id == row.id)
                .values(sync_token=page.next_sync_token)
            )
        return changed
    return changed


def _lister(
    client: CalendarClient, calendar_id: str, cursor: str | None, page_token: str | None
) -> Callable[[str], Awaitable[EventsPage]]:
    async def list_page(token: str) -> EventsPage:
        return await client.list_events(
            token, calendar_id, sync_token=cursor, page_token=page_token
        )

    return list_page


async def _record_failure(
    deps: Deps, tenant: uuid.UUID, connection_id: uuid.UUID, exc: Exception
) -> None:
    async with deps.db.unit_of_work(tenant_service(tenant)) as session:
        await session.execute(
            update(GoogleConnection)
            .where(GoogleConnection.id == connection_id)
            .values(
                sync_status="error",
                sync_falhas=GoogleConnection.sync_falhas + 1,
                ultimo_sync_erro=redact(str(exc))[:500],
            )
        )


async def sync_stale(deps: Deps) -> dict[uuid.UUID, int]:
    """The fallback when notifications stop: every active connection with a calendar that
    has not synced for STALE_AFTER is synced now."""
    async with deps.db.system() as session:
        tenants = list((await session.execute(text("SELECT app_list_tenants()"))).scalars())
    cutoff = deps.clock.now() - STALE_AFTER
    results: dict[uuid.UUID, int] = {}
    for tenant in tenants:
        async with deps.db.unit_of_work(tenant_service(tenant)) as session:
            stale = list(
                await session.scalars(
                    select(GoogleConnection.id).where(
                        GoogleConnection.deletado_em.is_(None),
                        GoogleConnection.status == "active",
                        GoogleConnection.calendar_id.is_not(None),
                        GoogleConnection.sincronizar_eventos.is_not(False),
                        GoogleConnection.ultimo_sync.is_(None)
                        | (GoogleConnection.ultimo_sync < cutoff),
                    )
                )
            )
        for connection_id in stale:
            try:
                results[connection_id] = await sync_connection(deps, tenant, connection_id)
            except Exception as exc:  # recorded on the connection; the next run tries again
                _log.warning("fallback sync of %s failed: %r", connection_id, exc)
    return results
