"""CrmEventsService: the thin servicer for pipeline events published by other CRM services.
Service identity or tenant admin (the permission interceptor refuses members)."""

from __future__ import annotations

import datetime as dt
import math
import uuid

import grpc
from renove.conexoes.v1 import crm_events_service_pb2 as pb
from renove.conexoes.v1 import crm_events_service_pb2_grpc as pb_grpc

from server.bootstrap import Deps
from server.crm_events.publish import PipelineEvent, parse_uuid, publish, validate_money
from server.errors import FieldViolation, InvalidArgument
from server.google_calendar import MeetingValues
from server.idempotency import answer_in, idempotent
from server.interceptors.context import current_caller
from server.protoconv import from_timestamp
from server.providers.meta_user_data import ContactInfo

_SERVICE = "CrmEventsService"
_EVENTS = {
    pb.PIPELINE_EVENT_TYPE_CONTACT_CREATED: "lead",
    pb.PIPELINE_EVENT_TYPE_MEETING_SCHEDULED: "schedule",
    pb.PIPELINE_EVENT_TYPE_MQL: "mql",
    pb.PIPELINE_EVENT_TYPE_OPPORTUNITY_WON: "won",
    pb.PIPELINE_EVENT_TYPE_OPPORTUNITY_LOST: "lost",
}
_MAX_TEXT = 255
_MAX_DESCRIPTION = 8000
# Producers' clocks drift; Meta refuses events from the future.
_CLOCK_SKEW = dt.timedelta(minutes=5)


def _contact(c: pb.ContactData) -> ContactInfo:
    return ContactInfo(
        email=c.email,
        phone=c.telefone,
        first_name=c.primeiro_nome,
        last_name=c.sobrenome,
        city=c.cidade,
        state=c.estado,
        zip_code=c.cep,
        country=c.pais,
        external_id=c.external_id,
        lead_id=c.lead_id.strip(),
        client_ip_address=c.client_ip_address,
        client_user_agent=c.client_user_agent,
        fbc=c.fbc,
        fbp=c.fbp,
    )


def _meeting_problems(request: pb.PublishPipelineEventRequest) -> list[FieldViolation]:
    m = request.reuniao
    problems = []
    if request.event_type != pb.PIPELINE_EVENT_TYPE_MEETING_SCHEDULED:
        problems.append(FieldViolation("reuniao", "only for MEETING_SCHEDULED"))
    if not m.titulo.strip():
        problems.append(FieldViolation("reuniao.titulo", "required"))
    elif len(m.titulo.strip()) > _MAX_TEXT:
        problems.append(FieldViolation("reuniao.titulo", f"at most {_MAX_TEXT} characters"))
    if len(m.descricao) > _MAX_DESCRIPTION:
        problems.append(
            FieldViolation("reuniao.descricao", f"at most {_MAX_DESCRIPTION} characters")
        )
    times = {}
    for name in ("inicio", "fim"):
        if not m.HasField(name):
            problems.append(FieldViolation(f"reuniao.{name}", "required"))
            continue
        try:
            times[name] = getattr(m, name).ToDatetime(tzinfo=dt.UTC)
        except (ValueError, OverflowError):
            problems.append(FieldViolation(f"reuniao.{name}", "not a valid time"))
    if len(times) == 2 and times["fim"] <= times["inicio"]:
        problems.append(FieldViolation("reuniao.fim", "must be after inicio"))
    try:
        uuid.UUID(m.usuario_id.strip())
    except ValueError:
        problems.append(FieldViolation("reuniao.usuario_id", "required, a uuid"))
    return problems


def _meeting(
    request: pb.PublishPipelineEventRequest,
    meeting_id: uuid.UUID | None,
    contato_id: uuid.UUID,
    occurred: dt.datetime,
) -> MeetingValues | None:
    if not request.HasField("reuniao") or meeting_id is None:
        return None
    m = request.reuniao
    return MeetingValues(
        id=meeting_id,
        updated_at=occurred,
        usuario_id=uuid.UUID(m.usuario_id.strip()),
        titulo=m.titulo.strip(),
        descricao=m.descricao.strip(),
        inicio=m.inicio.ToDatetime(tzinfo=dt.UTC),
        fim=m.fim.ToDatetime(tzinfo=dt.UTC),
        contato_id=contato_id,
        oportunidade_id=parse_uuid("oportunidade_id", request.oportunidade_id, required=False),
    )


def _event(request: pb.PublishPipelineEventRequest, now: dt.datetime) -> PipelineEvent:
    problems: list[FieldViolation] = []
    if not request.request_id.strip():
        problems.append(FieldViolation("request_id", "required"))
    elif len(request.request_id) > 100:
        problems.append(FieldViolation("request_id", "at most 100 characters"))
    crm_event = _EVENTS.get(request.event_type)
    if crm_event is None:
        problems.append(FieldViolation("event_type", "required"))
    if crm_event in ("won", "lost") and not request.oportunidade_id.strip():
        problems.append(FieldViolation("oportunidade_id", "required for WON and LOST"))
    if crm_event == "schedule" and not request.meeting_id.strip():
        problems.append(FieldViolation("meeting_id", "required for MEETING_SCHEDULED"))
    if math.isinf(request.value):
        problems.append(FieldViolation("value", "must be finite"))
    problems += validate_money(request.value, request.currency.strip().upper())
    if request.contato.lead_id.strip() and not request.contato.lead_id.strip().isdigit():
        problems.append(FieldViolation("contato.lead_id", "a Meta leadgen id is numeric"))
    for name in ("content_name", "motivo_perda", "origem"):
        if len(getattr(request, name)) > _MAX_TEXT:
            problems.append(FieldViolation(name, f"at most {_MAX_TEXT} characters"))
    occurred = from_timestamp(request.occurred_at, request.HasField("occurred_at"))
    if occurred is not None and occurred > now + _CLOCK_SKEW:
        problems.append(FieldViolation("occurred_at", "in the future"))
    if request.HasField("reuniao"):
        problems += _meeting_problems(request)
    if problems:
        raise InvalidArgument("invalid pipeline event", problems)
    assert crm_event is not None
    contato_id = parse_uuid("contato_id", request.contato_id, required=True)
    assert contato_id is not None
    c = request.contato
    nome = " ".join(p for p in (c.primeiro_nome.strip(), c.sobrenome.strip()) if p)
    summary = {
        "origem": request.origem.strip(),
        "motivo_perda": request.motivo_perda.strip(),
        "funil_id": request.funil_id.strip(),
        "etapa_id": request.etapa_id.strip(),
        "owner_id": request.owner_id.strip(),
    }
    meeting_id = parse_uuid("meeting_id", request.meeting_id, required=False)
    return PipelineEvent(
        request_id=request.request_id.strip(),
        crm_event=crm_event,
        contato_id=contato_id,
        occurred_at=occurred or now,
        contact=_contact(c),
        nome=nome,
        oportunidade_id=parse_uuid("oportunidade_id", request.oportunidade_id, required=False),
        meeting_id=meeting_id,
        value=request.value,
        currency=request.currency.strip().upper(),
        content_name=request.content_name.strip(),
        summary={k: v for k, v in summary.items() if v},
        meeting=_meeting(request, meeting_id, contato_id, occurred or now),
    )


class CrmEventsServicer(pb_grpc.CrmEventsServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    @idempotent
    async def PublishPipelineEvent(
        self, request: pb.PublishPipelineEventRequest, context: grpc.aio.ServicerContext
    ) -> pb.PublishPipelineEventResponse:
        caller = current_caller()
        tenant = caller.tenant_id
        if tenant is None:
            raise InvalidArgument.field("authorization", "a token naming the tenant (org)")
        event = _event(request, self.deps.clock.now())
        async with self.deps.db.unit_of_work(caller) as session:
            done = await publish(session, tenant, event, self.deps.clock.now())
            response = pb.PublishPipelineEventResponse(
                id=str(done.id),
                event_id=done.event_id,
                capi_event_name=done.capi_event_name,
                jobs=[
                    pb.EnqueuedJob(tipo=j.tipo, job_id=j.job_id, destino=j.destino)
                    for j in done.jobs
                ],
                deduplicated=done.deduplicated,
            )
            # What a repeat of this request gets: the same answer, marked deduplicated.
            repeat = pb.PublishPipelineEventResponse()
            repeat.CopyFrom(response)
            repeat.deduplicated = True
            await answer_in(session, repeat)
            return response


def register(server: grpc.aio.Server, deps: Deps) -> str:
    pb_grpc.add_CrmEventsServiceServicer_to_server(CrmEventsServicer(deps), server)
    return f"renove.conexoes.v1.{_SERVICE}"
