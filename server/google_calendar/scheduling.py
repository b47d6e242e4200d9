"""Meetings the CRM schedules (pipeline event MEETING_SCHEDULED) become Google events of
their owner's calendar, through the queue: `enqueue_for_meeting` in the transaction that
records the meeting, `create_for_meeting` in the worker. An owner without a connected
calendar has nothing to create; a meeting that already has its event is left alone."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Contact, GoogleConnection, Meeting
from server.auth.caller import Caller, Role
from server.bootstrap import Deps
from server.google_calendar.connection import tenant_service, with_token
from server.google_calendar.events import Attendee, EventInput, create_event
from server.resilience.jobs import Job, enqueue
from server.resilience.operations import GOOGLE_CALENDAR_CREATE


async def enqueue_for_meeting(
    session: AsyncSession, tenant: uuid.UUID, meeting_id: uuid.UUID, key: str
) -> uuid.UUID | None:
    """Queues the event's creation in the caller's transaction (idempotent by `key`)."""
    return await enqueue(
        session,
        tenant_id=tenant,
        operation=GOOGLE_CALENDAR_CREATE,
        payload={"meeting_id": str(meeting_id)},
        idempotency_key=f"{GOOGLE_CALENDAR_CREATE.name}:{key}",
    )


async def create_for_meeting(deps: Deps, job: Job) -> str:
    """The job: returns the Google event id, or "" when there was nothing to create."""
    meeting_id = uuid.UUID(str(job.payload["meeting_id"]))
    async with deps.db.unit_of_work(tenant_service(job.tenant_id)) as session:
        meeting = await session.get(Meeting, meeting_id)
        if meeting is None or meeting.google_event_id or meeting.usuario_id is None:
            return ""
        connected = await session.scalar(
            select(GoogleConnection.id).where(
                GoogleConnection.usuario_id == meeting.usuario_id,
                GoogleConnection.deletado_em.is_(None),
                GoogleConnection.status == "active",
                GoogleConnection.calendar_id.is_not(None),
            )
        )
        if connected is None:
            return ""
        email = None
        if meeting.contato_id is not None:
            email = await session.scalar(
                select(Contact.email).where(Contact.id == meeting.contato_id)
            )
        inp = EventInput(
            summary=meeting.titulo,
            description=meeting.descricao or "",
            start=meeting.inicio,
            end=meeting.fim,
            attendees=[Attendee(email)] if email else [],
        )
    owner = Caller(role=Role.SERVICE, tenant_id=job.tenant_id, user_id=meeting.usuario_id)
    # The job's key names the event: a job run twice finds its event instead of a second one.
    result = await create_event(
        deps,
        owner,
        str(meeting_id),
        inp,
        send_updates="all",
        request_id=job.idempotency_key,
        call=with_token,
    )
    return str(result.event["id"])
