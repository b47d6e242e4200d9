"""Two-way sync, Google -> CRM: what changed in the calendar (a push notification, or the
periodic fallback when notifications stop) is read with the stored sync token, and each
change to an event linked to a CRM meeting updates the meeting and is recorded on the change
feed (CALENDAR_EVENT_CHANGED) in the same transaction. A 410 (sync token expired) discards
the token and runs a full sync. Sync state per connection: status, cursor, last success,
failures.

Google is called outside any database transaction: one sync at a time per connection holds
a lease on the connection row (server/google_calendar/sync_lease.py), reads every page, then
applies the changes and the new sync token in one short transaction.
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
from server.google_calendar.connection import calendar_client, tenant_service, with_token
from server.google_calendar.sync_lease import (
    SyncStart,
    claim,
    hand_back,
    lock_held,
    lock_key,
    release,
)
from server.outbox import record_change
from server.providers.google_calendar import CalendarClient, EventsPage, SyncTokenGone
from server.security.redaction import redact

_log = logging.getLogger(__name__)
FALLBACK_TASK = "google_calendar.fallback_sync"
# A connection not synced for this long gets a sync from the fallback task.
STALE_AFTER = dt.timedelta(minutes=15)
_MAX_PAGES = 100
CHANGE_KIND = "CALENDAR_EVENT_CHANGED"


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
    """Applies one Google event to its CRM meeting and records the change on the feed;
    returns what changed (None: nothing)."""
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
    await record_change(session, tenant, CHANGE_KIND, data, user_id=meeting.usuario_id)
    return data


async def sync_connection(deps: Deps, tenant: uuid.UUID, connection_id: uuid.UUID) -> int:
    """Runs one incremental sync (a full one without a cursor or after a 410); returns how
    many meetings changed. A sync already running for the connection is asked to read again
    instead (0 here). Raises the provider's error after recording it."""
    mine = uuid.uuid4()
    async with deps.db.session_lock(lock_key(connection_id)) as alone:
        async with deps.db.unit_of_work(tenant_service(tenant)) as session:
            start = await claim(session, connection_id, mine, deps.clock.now(), alone=alone)
        changed = 0
        try:
            while start is not None:
                items, cursor = await _read(deps, tenant, connection_id, start)
                done, start = await _apply(deps, tenant, connection_id, mine, start, items, cursor)
                changed += done
        except DomainError as exc:
            await _record_failure(deps, tenant, connection_id, mine, exc)
            raise
        except Exception:
            async with deps.db.unit_of_work(tenant_service(tenant)) as session:
                await release(session, connection_id, mine)
            raise
        return changed


async def _read(
    deps: Deps, tenant: uuid.UUID, connection_id: uuid.UUID, start: SyncStart
) -> tuple[list[Mapping[str, Any]], str | None]:
    """Every page of what changed since `start` (no transaction open); returns the events
    and the next sync token."""
    client = calendar_client(deps)
    cursor = start.sync_token
    items: list[Mapping[str, Any]] = []
    page_token: str | None = None
    for _ in range(_MAX_PAGES):
        try:
            page = await with_token(
                deps, tenant, connection_id, _lister(client, start.calendar_id, cursor, page_token)
            )
        except SyncTokenGone:
            _log.info("Google sync token of %s expired: full sync", connection_id)
            cursor, page_token, items = None, None, []
            continue
        items.extend(page.items)
        if page.next_page_token:
            page_token = page.next_page_token
            continue
        return items, page.next_sync_token or cursor
    return items, cursor


async def _apply(
    deps: Deps,
    tenant: uuid.UUID,
    connection_id: uuid.UUID,
    mine: uuid.UUID,
    start: SyncStart,
    items: list[Mapping[str, Any]],
    cursor: str | None,
) -> tuple[int, SyncStart | None]:
    """One short transaction: the changes, their feed records and the new cursor; then the
    lease is handed back (or kept for another round). Returns (changed, next round)."""
    async with deps.db.unit_of_work(tenant_service(tenant)) as session:
        row = await lock_held(session, connection_id, mine)
        if row is None:  # the lease ran out and another sync took over: it reads afresh
            _log.warning("Google sync of %s lost its lease; its reading is dropped", connection_id)
            return 0, None
        # A calendar chosen meanwhile reset the cursor: this reading is of the old calendar.
        current = row.deletado_em is None and row.calendar_id == start.calendar_id
        changed = 0
        if current:
            for item in items:
                if await apply_change(session, tenant, item) is not None:
                    changed += 1
            await session.execute(
                update(GoogleConnection)
                .where(GoogleConnection.id == connection_id)
                .values(
                    sync_token=cursor,
                    sync_status="ok",
                    sync_falhas=0,
                    ultimo_sync_erro=None,
                    ultimo_sync=deps.clock.now(),
                )
                .execution_options(synchronize_session=False)
            )
        else:
            cursor = row.sync_token
        following = await hand_back(
            session, row, deps.clock.now(), cursor=cursor, read_again=not current
        )
        return changed, following


def _lister(
    client: CalendarClient, calendar_id: str, cursor: str | None, page_token: str | None
) -> Callable[[str], Awaitable[EventsPage]]:
    async def list_page(token: str) -> EventsPage:
        return await client.list_events(
            token, calendar_id, sync_token=cursor, page_token=page_token
        )

    return list_page


async def _record_failure(
    deps: Deps, tenant: uuid.UUID, connection_id: uuid.UUID, mine: uuid.UUID, exc: Exception
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
        await release(session, connection_id, mine)


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
