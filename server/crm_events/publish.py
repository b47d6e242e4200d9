"""A pipeline event from the CRM: recorded once, the contact mirror updated, and in the same
transaction the jobs it triggers: a `capi_event` when the Conversions API is active and the
event enabled, an `audience_sync` for every active audience the event feeds, and for a
scheduled meeting that carries its facts, the meeting mirror and its Google event
(`google_calendar_create`, when the owner's calendar is connected).

Personal data arrives in plain text and leaves this module only hashed (Meta's rules, in
server.providers.meta_user_data): the job payloads hold hashes, never the values.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    Contact,
    ConversionsApiConfig,
    CustomAudience,
    CustomAudienceMember,
    MetaLeadReceived,
    PipelineEventRecord,
)
from server.conversions import (
    EVENT_NAMES,
    Money,
    contact_info,
    event_enabled,
    load_config,
    meta_event,
    record_pending,
    send_value,
)
from server.crm_directory import ContactValues, upsert_contact
from server.errors import FieldViolation, InvalidArgument
from server.google_calendar import MeetingValues, schedule_meeting
from server.providers.meta_user_data import ContactInfo, hash_value, user_data
from server.resilience.jobs import enqueue
from server.resilience.operations import AUDIENCE_SYNC, CAPI_EVENT, GOOGLE_CALENDAR_CREATE

_CURRENCY = re.compile(r"^[A-Z]{3}$")
_ENTITY = {"won": "oportunidade", "lost": "oportunidade", "schedule": "tarefa"}


@dataclass(frozen=True)
class PipelineEvent:
    request_id: str
    crm_event: str  # lead | schedule | mql | won | lost
    contato_id: uuid.UUID
    occurred_at: dt.datetime
    contact: ContactInfo
    nome: str = ""
    oportunidade_id: uuid.UUID | None = None
    meeting_id: uuid.UUID | None = None
    value: float = 0.0
    currency: str = ""
    content_name: str = ""
    summary: dict[str, str] = field(default_factory=dict)
    meeting: MeetingValues | None = None  # MEETING_SCHEDULED with the meeting's facts


@dataclass(frozen=True)
class Enqueued:
    tipo: str
    job_id: str
    destino: str


@dataclass(frozen=True)
class Published:
    id: uuid.UUID
    event_id: str
    capi_event_name: str
    jobs: list[Enqueued]
    deduplicated: bool = False


def parse_uuid(name: str, value: str, *, required: bool) -> uuid.UUID | None:
    if not value.strip():
        if required:
            raise InvalidArgument.field(name, "required")
        return None
    try:
        return uuid.UUID(value.strip())
    except ValueError as exc:
        raise InvalidArgument.field(name, "not a uuid") from exc


def validate_money(value: float, currency: str) -> list[FieldViolation]:
    problems = []
    if value < 0 or value != value:  # NaN compares unequal to itself
        problems.append(FieldViolation("value", "must not be negative"))
    if currency and not _CURRENCY.match(currency):
        problems.append(FieldViolation("currency", "an ISO 4217 code such as BRL"))
    return problems


async def publish(
    session: AsyncSession, tenant_id: uuid.UUID, event: PipelineEvent, now: dt.datetime
) -> Published:
    """Records `event` and enqueues its jobs, in the caller's transaction. An event already
    recorded under its request id (sent before, or at the same moment, by another caller of
    the tenant) is not recorded again: its record is answered, deduplicated, with no jobs."""
    capi_name = EVENT_NAMES[event.crm_event]
    # Two callers publishing one request id at the same moment: the second waits here for
    # the first to commit, then finds its record (rather than failing on the unique key).
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
        {"key": f"pipeline-event:{tenant_id}:{event.request_id}"},
    )
    known = await session.scalar(
        select(PipelineEventRecord.id).where(PipelineEventRecord.request_id == event.request_id)
    )
    if known is not None:
        return Published(known, event.request_id, capi_name, [], deduplicated=True)
    contact = await _mirror(session, tenant_id, event)
    record_id = uuid.uuid4()
    await session.execute(
        insert(PipelineEventRecord).values(
            id=record_id,
            organizacao_id=tenant_id,
            request_id=event.request_id,
            evento=event.crm_event,
            contato_id=event.contato_id,
            oportunidade_id=event.oportunidade_id,
            meeting_id=event.meeting_id,
            ocorrido_em=event.occurred_at,
            capi_event_name=capi_name,
            resumo=event.summary or None,
        )
    )
    jobs: list[Enqueued] = []
    capi = await load_config(session)
    if capi is not None and capi.ativo and event_enabled(capi, event.crm_event):
        job = await _enqueue_capi(session, tenant_id, event, contact, capi, now)
        if job is not None:
            jobs.append(job)
    jobs.extend(await _enqueue_audiences(session, tenant_id, event, contact))
    if event.meeting is not None:
        scheduled = await schedule_meeting(session, tenant_id, event.meeting, prefix="reuniao.")
        if scheduled.job_id is not None:
            jobs.append(
                Enqueued(GOOGLE_CALENDAR_CREATE.name, str(scheduled.job_id), scheduled.calendar_id)
            )
    return Published(record_id, event.request_id, capi_name, jobs)


def _merged(first: str, known: Sequence[str] | None) -> tuple[str, ...]:
    values = [first.strip()] if first.strip() else []
    return tuple(dict.fromkeys([*values, *(known or ())]))


async def _mirror(session: AsyncSession, tenant_id: uuid.UUID, event: PipelineEvent) -> Contact:
    """Upserts the contact mirror with what the event carries, as of when it happened (an
    older event never overwrites the directory's newer data); what it leaves out is kept."""
    known = await session.get(Contact, event.contato_id)
    c = event.contact

    def keep(value: str, attr: str) -> str | None:
        return value.strip() or (getattr(known, attr) if known is not None else None)

    await upsert_contact(
        session,
        tenant_id,
        ContactValues(
            id=event.contato_id,
            updated_at=event.occurred_at,
            nome=keep(event.nome, "nome"),
            owner_id=known.owner_id if known is not None else None,
            emails=_merged(c.email, known.emails if known is not None else None),
            telefones=_merged(c.phone, known.telefones if known is not None else None),
            cidade=keep(c.city, "cidade"),
            estado=keep(c.state, "estado"),
            cep=keep(c.zip_code, "cep"),
            pais=keep(c.country, "pais"),
            consentimento=known.consentimento if known is not None else None,
        ),
        prefix="contato.",
        revive=False,
    )
    contact = await session.get(Contact, event.contato_id, populate_existing=True)
    assert contact is not None  # created now, or a newer write of the directory exists
    return contact


async def _lead_id(session: AsyncSession, contato_id: uuid.UUID) -> str:
    """The Lead Ads leadgen id the contact came from, if it came from Lead Ads."""
    found = await session.scalar(
        select(MetaLeadReceived.leadgen_id)
        .where(MetaLeadReceived.contato_id == contato_id)
        .order_by(MetaLeadReceived.criado_em)
        .limit(1)
    )
    return found or ""


async def _enqueue_capi(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    event: PipelineEvent,
    contact: Contact,
    capi: ConversionsApiConfig,
    now: dt.datetime,
) -> Enqueued | None:
    if event.crm_event == "lead":
        if contact.capi_lead_event_id not in (None, event.request_id):
            return None  # one Lead per contact: recorded, not sent again
        contact.capi_lead_event_id = event.request_id  # the upsert holds the row's lock
    # What the event leaves empty comes from the mirror (the directory, Lead Ads answers).
    given = {k: v for k, v in event.contact.__dict__.items() if v.strip()}
    info = replace(contact_info(contact), **given)
    if not info.lead_id:
        info = replace(info, lead_id=await _lead_id(session, event.contato_id))
    money = None
    if event.crm_event == "won" and send_value(capi) and event.value > 0:
        money = Money(round(event.value, 2), event.currency or "BRL")
    built = meta_event(
        crm_event=event.crm_event,
        event_id=event.request_id,
        event_time=event.occurred_at,
        user_data=user_data(info),
        money=money,
        content_name=event.content_name,
    )
    entity = event.oportunidade_id if event.crm_event in ("won", "lost") else None
    entity = event.meeting_id if event.crm_event == "schedule" else entity
    facts = {
        "crm_event": event.crm_event,
        "contato_id": str(event.contato_id),
        "entidade_tipo": _ENTITY.get(event.crm_event, "contato"),
        "entidade_id": str(entity or event.contato_id),
        "resumo": event.summary,
    }
    # Logged pending now, so a backlog is visible and leaves in full batches.
    await record_pending(session, tenant_id, capi, built, facts, now)
    job_id = await enqueue(
        session,
        tenant_id=tenant_id,
        operation=CAPI_EVENT,
        payload={"event": built, **facts},
        idempotency_key=f"capi:{event.request_id}",
        destino=capi.pixel_id,
    )
    return Enqueued(CAPI_EVENT.name, str(job_id), capi.pixel_id) if job_id else None


async def _enqueue_audiences(
    session: AsyncSession, tenant_id: uuid.UUID, event: PipelineEvent, contact: Contact
) -> list[Enqueued]:
    # The rule of server.audiences.sync.matching_contacts: a deleted contact, or one who
    # withdrew consent, joins no audience (the directory's removal already took it out).
    if contact.deletado_em is not None or contact.consentimento is False:
        return []
    audiences = await session.scalars(
        select(CustomAudience).where(
            CustomAudience.deletado_em.is_(None),
            CustomAudience.estado == "ready",
            CustomAudience.ativo.is_not(False),
            CustomAudience.tipo_sincronizacao == "evento",
            CustomAudience.evento_gatilho == event.crm_event,
        )
    )
    raw_email = event.contact.email.strip() or contact.email or ""
    raw_phone = event.contact.phone.strip() or contact.telefone or ""
    email = hash_value("em", raw_email) if raw_email else ""
    phone = hash_value("ph", raw_phone) if raw_phone else ""
    out = []
    for audience in audiences:
        await session.execute(
            insert(CustomAudienceMember)
            .values(
                organizacao_id=tenant_id,
                audience_id=audience.id,
                contato_id=event.contato_id,
                email_hash=email or None,
                phone_hash=phone or None,
                sincronizado=False,
            )
            .on_conflict_do_nothing(index_elements=["audience_id", "contato_id"])
        )
        job_id = await enqueue(
            session,
            tenant_id=tenant_id,
            operation=AUDIENCE_SYNC,
            payload={"audience_id": str(audience.id), "full_resync": False},
            idempotency_key=f"audience:{audience.id}:{event.request_id}",
            destino=str(audience.id),
        )
        if job_id is not None:
            out.append(Enqueued(AUDIENCE_SYNC.name, str(job_id), str(audience.id)))
    return out
