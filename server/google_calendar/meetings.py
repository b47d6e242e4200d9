"""Meetings the CRM schedules (pipeline event MEETING_SCHEDULED with the meeting's facts):
the meeting mirror upserted, keyed by the CRM's meeting id and ordered by when the CRM said
it (an older word never overwrites a newer one), and in the same transaction its Google
event queued when the owner has an active connection with a calendar selected.

The event is queued once per meeting (the job's key is the meeting): a repeated or later
publish about the same meeting queues nothing more, and the job leaves a meeting that
already has its event alone. An owner who connects Google later gets events for meetings
published after that, not for earlier ones.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import GoogleConnection, Meeting, Opportunity, User
from server.errors import InvalidArgument
from server.google_calendar.scheduling import enqueue_for_meeting


@dataclass(frozen=True)
class MeetingValues:
    """A meeting as the CRM sends it. Times must be timezone-aware."""

    id: uuid.UUID
    updated_at: dt.datetime  # when the CRM said it (the pipeline event's occurred_at)
    usuario_id: uuid.UUID  # the owner, whose calendar gets the event
    titulo: str
    inicio: dt.datetime
    fim: dt.datetime
    descricao: str = ""
    contato_id: uuid.UUID | None = None
    oportunidade_id: uuid.UUID | None = None


@dataclass(frozen=True)
class ScheduledMeeting:
    applied: bool  # False: the mirror already held a newer (or as new) word about it
    job_id: uuid.UUID | None = None  # the google_calendar_create job queued now, if any
    calendar_id: str = ""


async def schedule_meeting(
    session: AsyncSession, tenant: uuid.UUID, values: MeetingValues, *, prefix: str = ""
) -> ScheduledMeeting:
    """Upserts the meeting and queues its Google event, in `session`'s transaction.

    Raises:
        InvalidArgument: the owner is not an active user of the tenant (`<prefix>usuario_id`).
    """
    owner = await session.scalar(
        select(User.id).where(
            User.id == values.usuario_id, User.ativo.is_not(False), User.deletado_em.is_(None)
        )
    )
    if owner is None:
        raise InvalidArgument.field(f"{prefix}usuario_id", "not an active user of the tenant")
    opportunity = None
    if values.oportunidade_id is not None:  # only one the mirror knows (a foreign key)
        opportunity = await session.scalar(
            select(Opportunity.id).where(Opportunity.id == values.oportunidade_id)
        )
    facts = {
        "usuario_id": values.usuario_id,
        "contato_id": values.contato_id,
        "oportunidade_id": opportunity,
        "titulo": values.titulo,
        "descricao": values.descricao or None,
        "inicio": values.inicio,
        "fim": values.fim,
        "crm_atualizado_em": values.updated_at,
    }
    stmt = insert(Meeting).values(id=values.id, organizacao_id=tenant, **facts)
    upsert = stmt.on_conflict_do_update(
        index_elements=[Meeting.id],
        set_=facts,
        where=or_(
            Meeting.crm_atualizado_em.is_(None),
            Meeting.crm_atualizado_em < stmt.excluded.crm_atualizado_em,
        ),
    ).returning(Meeting.id)
    applied = (await session.execute(upsert)).first() is not None
    meeting = await session.get(Meeting, values.id, populate_existing=True)
    if meeting is None or meeting.google_event_id or meeting.usuario_id is None:
        return ScheduledMeeting(applied)
    calendar_id = await session.scalar(
        select(GoogleConnection.calendar_id).where(
            GoogleConnection.usuario_id == meeting.usuario_id,
            GoogleConnection.deletado_em.is_(None),
            GoogleConnection.status == "active",
            GoogleConnection.calendar_id.is_not(None),
        )
    )
    if calendar_id is None:
        return ScheduledMeeting(applied)
    job_id = await enqueue_for_meeting(session, tenant, meeting.id, str(meeting.id))
    return ScheduledMeeting(applied, job_id, calendar_id)
