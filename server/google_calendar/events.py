"""CRM meetings as Google events (spec 5.2.6-5.2.7): create (with a Meet link when asked),
update and cancel, every change notifying the attendees (`sendUpdates`).

Inserts are idempotent: the event id is derived from the meeting and the request id, so a
retried insert whose first answer was lost meets Google's 409 `duplicate` and reads the
event instead of creating a second one. The Meet conference is requested with
conferenceDataVersion=1 and a requestId of its own; Google creates it asynchronously, so a
`pending` conference is read again a few times before answering (the link also arrives with
the next sync).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import GoogleConnection, Meeting
from server.audit import record_audit
from server.auth.caller import Caller
from server.bootstrap import Deps
from server.errors import FieldViolation, InvalidArgument
from server.google_calendar.connection import calendar_client, call_google, require_connection
from server.google_calendar.errors import (
    CalendarNotSelected,
    EventExists,
    EventNotFound,
    MeetingNotFound,
)
from server.google_calendar.sync import attendees_of, meet_link, parse_time
from server.providers.errors import ProviderRejected

GoogleCall = Callable[[Deps, uuid.UUID, uuid.UUID, Callable[[str], Awaitable[Any]]], Awaitable[Any]]
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Reads of a `pending` conference before answering without its link (Google usually
# finishes within a second or two).
MEET_POLLS = (0.2, 0.4, 0.8, 1.6)


@dataclass(frozen=True)
class Attendee:
    email: str
    display_name: str = ""
    optional: bool = False


@dataclass(frozen=True)
class EventInput:
    summary: str | None = None
    description: str | None = None
    location: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    time_zone: str | None = None
    attendees: Sequence[Attendee] | None = None
    add_google_meet: bool | None = None


@dataclass(frozen=True)
class EventResult:
    event: Mapping[str, Any]
    meeting_id: str = ""
    calendar_id: str = ""
    meet_status: str = ""
    meet_reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def meet_link(self) -> str:
        return meet_link(self.event) or ""


def validate(inp: EventInput, *, creating: bool, prefix: str = "") -> None:
    problems: list[FieldViolation] = []
    if creating and not (inp.summary or "").strip():
        problems.append(FieldViolation("summary", "required"))
    if creating and inp.start is None:
        problems.append(FieldViolation("start", "required"))
    if creating and inp.end is None:
        problems.append(FieldViolation("end", "required"))
    if inp.start is not None and inp.end is not None and inp.end <= inp.start:
        problems.append(FieldViolation("end", "must be after start"))
    for i, person in enumerate(inp.attendees or ()):
        if not _EMAIL.match(person.email):
            problems.append(FieldViolation(f"attendees[{i}].email", "not an e-mail address"))
    if problems:
        raise InvalidArgument("the event is not valid", problems)


def event_id_for(meeting_id: uuid.UUID, request_id: str) -> str:
    """A Google event id (base32hex: hex digits qualify) stable for one meeting and request."""
    return hashlib.sha256(f"{meeting_id}:{request_id}".encode()).hexdigest()[:40]


def _when(value: dt.datetime, time_zone: str | None) -> dict[str, str]:
    body = {"dateTime": value.isoformat()}
    if time_zone:
        body["timeZone"] = time_zone
    return body


def _body(inp: EventInput, request_id: str, meet: bool | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in ("summary", "description", "location"):
        value = getattr(inp, name)
        if value is not None:
            body[name] = value
    if inp.start is not None:
        body["start"] = _when(inp.start, inp.time_zone)
    if inp.end is not None:
        body["end"] = _when(inp.end, inp.time_zone)
    if inp.attendees is not None:
        body["attendees"] = [
            {
                "email": a.email,
                **({"displayName": a.display_name} if a.display_name else {}),
                **({"optional": True} if a.optional else {}),
            }
            for a in inp.attendees
        ]
    if meet:
        body["conferenceData"] = {
            "createRequest": {
                "requestId": f"{request_id}-meet",
                "conferenceSolutionKey": {"type": "hangoutsMeet"},
            }
        }
    elif meet is False:
        body["conferenceData"] = None
    return body


def conference_status(event: Mapping[str, Any]) -> str:
    data = event.get("conferenceData") or {}
    status = ((data.get("createRequest") or {}).get("status") or {}).get("statusCode")
    if status:
        return str(status)
    return "success" if meet_link(event) else ""


async def _own_meeting(session: AsyncSession, caller: Caller, meeting_id: uuid.UUID) -> Meeting:
    meeting: Meeting | None = await session.scalar(
        select(Meeting).where(Meeting.id == meeting_id).with_for_update()
    )
    if meeting is None or (meeting.usuario_id not in (None, caller.user_id)):
        raise MeetingNotFound("no such meeting of yours")
    return meeting


async def create_event(
    deps: Deps,
    caller: Caller,
    meeting_id: str,
    inp: EventInput,
    *,
    send_updates: str,
    request_id: str,
    call: GoogleCall = call_google,
) -> EventResult:
    """Creates the meeting's event. `call` is how Google is called: under the Calendar
    breaker (the default), or as the job chooses (the worker holds the breaker, retries)."""
    try:
        meeting_uuid = uuid.UUID(meeting_id)
    except ValueError:
        raise InvalidArgument(
            "meeting_id must be a uuid", [FieldViolation("meeting_id", "not a uuid")]
        ) from None
    validate(inp, creating=True)
    tenant = caller.require_tenant()
    async with deps.db.unit_of_work(caller) as session:
        conn = await require_connection(session, caller)
        if not conn.calendar_id:
            raise CalendarNotSelected("select a calendar first")
        meeting = await _own_meeting(session, caller, meeting_uuid)
        event_id = event_id_for(meeting_uuid, request_id or str(meeting_uuid))
        # The event this very request made, its answer lost with the server that made it
        # (the repeat runs again): answered, not refused.
        made_by_this_request = bool(request_id) and meeting.google_event_id == event_id
        if meeting.google_event_id and not made_by_this_request:
            raise EventExists("this meeting already has a Google event")
        conn_id, calendar_id = conn.id, conn.calendar_id
        meet = (
            inp.add_google_meet if inp.add_google_meet is not None else bool(conn.criar_google_meet)
        )
    client = calendar_client(deps)
    if made_by_this_request:
        found = await call(
            deps, tenant, conn_id, lambda token: client.get_event(token, calendar_id, event_id)
        )
        found, status, reason = await _await_meet(
            deps, tenant, conn_id, calendar_id, found, bool(meet)
        )
        return EventResult(found, str(meeting_uuid), calendar_id, status, reason)
    body = _body(inp, event_id, meet or None)
    body["id"] = event_id
    body["extendedProperties"] = {"private": {"crm_meeting_id": str(meeting_uuid)}}

    async def insert(token: str) -> Mapping[str, Any]:
        try:
            return await client.insert_event(token, calendar_id, body, send_updates=send_updates)
        except ProviderRejected as exc:
            if exc.status_code != 409:
                raise
            # Our own earlier attempt created it: read it instead of creating another.
            return await client.get_event(token, calendar_id, event_id)

    event = await call(deps, tenant, conn_id, insert)
    event, status, reason = await _await_meet(deps, tenant, conn_id, calendar_id, event, bool(meet))
    async with deps.db.unit_of_work(caller) as session:
        await session.execute(
            update(Meeting)
            .where(Meeting.id == meeting_uuid)
            .values(
                google_event_id=str(event["id"]),
                google_meet_link=meet_link(event),
                google_calendar_id=calendar_id,
                google_atualizado_em=parse_time(event.get("updated")),
                participantes=attendees_of(event),
            )
        )
        await record_audit(
            session,
            caller,
            "google_calendar.event_created",
            entity_type="meetings",
            entity_id=meeting_uuid,
            details={"google_event_id": event["id"], "meet": status or "none"},
        )
    return EventResult(event, str(meeting_uuid), calendar_id, status, reason)


async def _await_meet(
    deps: Deps,
    tenant: uuid.UUID,
    conn_id: uuid.UUID,
    calendar_id: str,
    event: Mapping[str, Any],
    asked: bool,
) -> tuple[Mapping[str, Any], str, str]:
    if not asked:
        return event, "", ""
    client = calendar_client(deps)
    status = conference_status(event)
    for pause in MEET_POLLS:
        if status != "pending":
            break
        await deps.clock.sleep(pause)
        event_id = str(event["id"])

        async def read(token: str, event_id: str = event_id) -> Mapping[str, Any]:
            return await client.get_event(token, calendar_id, event_id)

        event = await call_google(deps, tenant, conn_id, read)
        status = conference_status(event)
    reason = {"failure": "MEET_NOT_ALLOWED", "pending": "MEET_PENDING"}.get(status, "")
    if not status:
        status, reason = "failure", "MEET_NOT_ALLOWED"
    return event, status, reason


async def _linked(
    session: AsyncSession, caller: Caller, event_id: str
) -> tuple[GoogleConnection, Meeting | None]:
    conn = await require_connection(session, caller)
    meeting: Meeting | None = await session.scalar(
        select(Meeting)
        .where(Meeting.google_event_id == event_id, Meeting.usuario_id == caller.user_id)
        .with_for_update()
    )
    return conn, meeting


async def update_event(
    deps: Deps, caller: Caller, event_id: str, inp: EventInput, *, send_updates: str
) -> EventResult:
    if not event_id.strip():
        raise InvalidArgument("id is required", [FieldViolation("id", "required")])
    validate(inp, creating=False)
    tenant = caller.require_tenant()
    async with deps.db.unit_of_work(caller) as session:
        conn, meeting = await _linked(session, caller, event_id)
        calendar_id = (meeting.google_calendar_id if meeting else None) or conn.calendar_id
        conn_id = conn.id
    if not calendar_id:
        raise EventNotFound("no such event")
    client = calendar_client(deps)
    # A Meet added now is a new conference: a fresh requestId.
    body = _body(inp, uuid.uuid4().hex, inp.add_google_meet)

    async def patch(token: str) -> Mapping[str, Any]:
        return await client.patch_event(
            token, calendar_id, event_id, body, send_updates=send_updates
        )

    try:
        event = await call_google(deps, tenant, conn_id, patch)
    except ProviderRejected as exc:
        if exc.status_code in (404, 410):
            raise EventNotFound("no such event in your calendar") from exc
        raise
    event, status, reason = await _await_meet(
        deps, tenant, conn_id, calendar_id, event, bool(inp.add_google_meet)
    )
    meeting_id = ""
    if meeting is not None:
        meeting_id = str(meeting.id)
        values: dict[str, Any] = {
            "google_meet_link": meet_link(event),
            "google_atualizado_em": parse_time(event.get("updated")),
            "participantes": attendees_of(event),
        }
        if inp.start is not None:
            values["inicio"] = inp.start
        if inp.end is not None:
            values["fim"] = inp.end
        if inp.summary is not None:
            values["titulo"] = inp.summary[:255]
        async with deps.db.unit_of_work(caller) as session:
            await session.execute(update(Meeting).where(Meeting.id == meeting.id).values(**values))
            await record_audit(
                session,
                caller,
                "google_calendar.event_updated",
                entity_type="meetings",
                entity_id=meeting.id,
                details={"google_event_id": event_id},
            )
    return EventResult(event, meeting_id, calendar_id, status, reason)


async def cancel_event(deps: Deps, caller: Caller, event_id: str, *, send_updates: str) -> str:
    """Deletes the event at Google (already deleted counts as done) and unlinks the meeting;
    returns the meeting id ("" when none was linked)."""
    if not event_id.strip():
        raise InvalidArgument("id is required", [FieldViolation("id", "required")])
    tenant = caller.require_tenant()
    async with deps.db.unit_of_work(caller) as session:
        conn, meeting = await _linked(session, caller, event_id)
        calendar_id = (meeting.google_calendar_id if meeting else None) or conn.calendar_id
        conn_id = conn.id
    if not calendar_id:
        raise EventNotFound("no such event")
    client = calendar_client(deps)

    async def delete(token: str) -> None:
        await client.delete_event(token, calendar_id, event_id, send_updates=send_updates)

    try:
        await call_google(deps, tenant, conn_id, delete)
    except ProviderRejected as exc:
        if exc.status_code == 404:
            raise EventNotFound("no such event in your calendar") from exc
        raise
    if meeting is None:
        return ""
    async with deps.db.unit_of_work(caller) as session:
        await session.execute(
            update(Meeting)
            .where(Meeting.id == meeting.id)
            .values(google_event_id=None, google_meet_link=None, google_calendar_id=None)
        )
        await record_audit(
            session,
            caller,
            "google_calendar.event_cancelled",
            entity_type="meetings",
            entity_id=meeting.id,
            details={"google_event_id": event_id},
        )
    return str(meeting.id)
