"""Conversions API end to end: the CRM publishes pipeline events (CrmEventsService) -> jobs in
the same transaction -> the worker sends them to the Graph sandbox's `/{pixel}/events`, hashed
by Meta's rules -> the log, the stats and the configuration say what happened.

One stack for the module (sandbox, sidecar, server with its worker, PostgreSQL); each test
uses its own tenant and its own pixel, so faults and rejections never cross tests.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import timestamp_pb2
from renove.conexoes.v1 import conversions_service_pb2 as pb
from renove.conexoes.v1 import conversions_service_pb2_grpc as pb_grpc
from renove.conexoes.v1 import crm_events_service_pb2 as epb
from renove.conexoes.v1 import crm_events_service_pb2_grpc as epb_grpc
from renove.conexoes.v1 import resources_pb2
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import (
    Alert,
    AuditEntry,
    Contact,
    ConversionsApiLog,
    OutboxEvent,
    PendingEvent,
)
from server.auth.caller import Caller, Role
from server.resilience.policies import policy_for
from server.resilience.worker import Worker
from tests.conftest import MakeCaller, MakeTenant, MigratedDatabase, PgServer, Tenant
from tests.integration.meta_leads_support import (
    MetaStack,
    isolated_database,
    make_pipeline,
    meta_stack,
    owner_engine_for,
    poll,
)
from tests.unit.test_meta_user_data import KNOWN

CONTACT = epb.ContactData(
    email=KNOWN["em"][0],
    telefone=KNOWN["ph"][0],
    primeiro_nome=KNOWN["fn"][0],
    sobrenome="Silva",
    cidade=KNOWN["ct"][0],
    estado=KNOWN["st"][0],
    cep=KNOWN["zp"][0],
    pais=KNOWN["country"][0],
)
EVENTS = {
    epb.PIPELINE_EVENT_TYPE_CONTACT_CREATED: "Lead",
    epb.PIPELINE_EVENT_TYPE_MEETING_SCHEDULED: "Schedule",
    epb.PIPELINE_EVENT_TYPE_MQL: "CompleteRegistration",
    epb.PIPELINE_EVENT_TYPE_OPPORTUNITY_WON: "Purchase",
    epb.PIPELINE_EVENT_TYPE_OPPORTUNITY_LOST: "lead_lost",
}


@pytest_asyncio.fixture(scope="module")
async def database(pg: PgServer) -> AsyncIterator[MigratedDatabase]:
    async with isolated_database(pg) as fresh:
        yield fresh


@pytest_asyncio.fixture(scope="module")
async def owner_engine(database: MigratedDatabase) -> AsyncIterator[AsyncEngine]:
    async with owner_engine_for(database) as engine:
        yield engine


@pytest_asyncio.fixture(scope="module")
async def stack(
    database: MigratedDatabase, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MetaStack]:
    data = tmp_path_factory.mktemp("capi")
    async with meta_stack(database.owner_url, str(data)) as running:
        yield running


class Capi:
    """One tenant's view: its admin, its service identity and a pixel of its own."""

    def __init__(self, stack: MetaStack, tenant: Tenant, make_caller: MakeCaller) -> None:
        self.stack = stack
        self.tenant = tenant
        self.admin = make_caller(tenant, Role.ADMIN)
        self.service: Caller = make_caller(tenant, Role.SERVICE)
        self.capi = pb_grpc.ConversionsServiceStub(stack.server.channel)
        self.events = epb_grpc.CrmEventsServiceStub(stack.server.channel)
        self.pixel_id = ""
        self.token = ""

    async def setup(self, **save: Any) -> pb.CapiConfig:
        made = await self.stack.control("capi/pixels")
        self.pixel_id, self.token = made["pixel_id"], made["access_token"]
        response = await self.capi.SaveCapiConfig(
            pb.SaveCapiConfigRequest(
                pixel_id=self.pixel_id, access_token=self.token, ativo=True, **save
            ),
            metadata=self.stack.md(self.admin),
        )
        return response.config

    async def publish(
        self,
        event_type: int,
        request_id: str | None = None,
        *,
        contato_id: str | None = None,
        contato: epb.ContactData = CONTACT,
        occurred_at: dt.datetime | None = None,
        **extra: Any,
    ) -> epb.PublishPipelineEventResponse:
        if event_type in (
            epb.PIPELINE_EVENT_TYPE_OPPORTUNITY_WON,
            epb.PIPELINE_EVENT_TYPE_OPPORTUNITY_LOST,
        ):
            extra.setdefault("oportunidade_id", str(uuid.uuid4()))
        if event_type == epb.PIPELINE_EVENT_TYPE_MEETING_SCHEDULED:
            extra.setdefault("meeting_id", str(uuid.uuid4()))
        when = None
        if occurred_at is not None:
            when = timestamp_pb2.Timestamp()
            when.FromDatetime(occurred_at)
        return await self.events.PublishPipelineEvent(
            epb.PublishPipelineEventRequest(
                request_id=request_id or f"evt-{uuid.uuid4()}",
                event_type=event_type,  # type: ignore[arg-type]
                contato_id=contato_id or str(uuid.uuid4()),
                contato=contato,
                occurred_at=when,
                **extra,
            ),
            metadata=self.stack.md(self.service),
        )

    async def received(self) -> list[dict[str, Any]]:
        got = await self.stack.http.get(
            f"{self.stack.graph_url}/_control/capi/pixels/{self.pixel_id}/events"
        )
        events: list[dict[str, Any]] = got.json()["events"]
        return events

    async def wait_received(self, count: int) -> list[dict[str, Any]]:
        async def enough() -> list[dict[str, Any]] | None:
            events = await self.received()
            return events if len(events) >= count else None

        result: list[dict[str, Any]] = await poll(enough)
        return result

    async def logs(self, **filters: Any) -> list[pb.CapiLogEntry]:
        response = await self.capi.ListCapiLogs(
            pb.ListCapiLogsRequest(page_size=500, **filters), metadata=self.stack.md(self.admin)
        )
        return list(response.logs)

    async def wait_logs(self, done: int) -> list[pb.CapiLogEntry]:
        async def settled() -> list[pb.CapiLogEntry] | None:
            logs = [e for e in await self.logs() if not e.teste]
            finished = [e for e in logs if e.status != pb.CAPI_LOG_STATUS_PENDING]
            return logs if len(finished) >= done else None

        result: list[pb.CapiLogEntry] = await poll(settled)
        return result


@pytest.fixture
async def capi(stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller) -> Capi:
    return Capi(stack, await make_tenant(members=1), make_caller)


async def test_five_pipeline_events_reach_meta_hashed_once(capi: Capi) -> None:
    await capi.setup()
    contato = str(uuid.uuid4())
    opportunity = str(uuid.uuid4())
    published = []
    for event_type in EVENTS:
        won = event_type == epb.PIPELINE_EVENT_TYPE_OPPORTUNITY_WON
        published.append(
            await capi.publish(
                event_type,
                f"{opportunity}:won" if won else None,
                contato_id=contato,
                oportunidade_id=opportunity,
                value=5000.0 if won else 0.0,
                currency="BRL",
                content_name="Consultoria Premium",
            )
        )
    assert [p.capi_event_name for p in published] == list(EVENTS.values())
    assert all(p.jobs and p.jobs[0].tipo == "capi_event" for p in published)
    # The producer repeats the same event: recorded once, Meta hears of it once.
    again = await capi.publish(
        epb.PIPELINE_EVENT_TYPE_OPPORTUNITY_WON,
        f"{opportunity}:won",
        contato_id=contato,
        oportunidade_id=opportunity,
        value=5000.0,
        currency="BRL",
        content_name="Consultoria Premium",
    )
    assert again.deduplicated and again.id == published[3].id

    events = await capi.wait_received(5)
    by_name = {e["event_name"]: e for e in events}
    assert set(by_name) == set(EVENTS.values())
    for event in events:
        user = event["user_data"]
        for key, (_, digest) in KNOWN.items():
            assert user[key] == digest, key
        assert user["ln"] == "d24e913a4107af875dc2ac3d419798f3794d00434e5059fbb68ac8d33626eaee"
        assert "lead_id" not in user and "client_user_agent" not in user
        assert "client_ip_address" not in user and "fbc" not in user
        assert event["action_source"] == "system_generated"
        assert event["custom_data"]["event_source"] == "crm"
        assert event["custom_data"]["lead_event_source"]
        assert isinstance(event["event_time"], int)
    assert {e["event_id"] for e in events} == {p.event_id for p in published}
    assert by_name["Purchase"]["custom_data"]["value"] == 5000.0
    assert by_name["Purchase"]["custom_data"]["currency"] == "BRL"
    assert "value" not in by_name["Lead"]["custom_data"]

    logs = await capi.wait_logs(5)
    assert len(logs) == 5
    assert {e.status for e in logs} == {pb.CAPI_LOG_STATUS_SENT}
    assert all(e.response_code == 200 and e.fbrq_event_id for e in logs)
    text = str(logs).lower()
    for plain in ("joao", "silva", "98765", "paulo", "01310", KNOWN["em"][1]):
        assert plain not in text
    stats = await capi.capi.GetCapiStats(
        pb.GetCapiStatsRequest(), metadata=capi.stack.md(capi.admin)
    )
    assert (stats.eventos_enviados, stats.eventos_sucesso, stats.taxa_sucesso) == (5, 5, 100.0)
    assert {s.event_name for s in stats.por_evento} == set(EVENTS.values())
    config = (
        await capi.capi.GetCapiConfig(pb.GetCapiConfigRequest(), metadata=capi.stack.md(capi.admin))
    ).config
    assert (config.total_eventos_enviados, config.total_eventos_sucesso) == (5, 5)
    assert config.status == resources_pb2.CONNECTION_STATUS_ACTIVE
    assert config.access_token_set and not hasattr(config, "access_token")

    # Still once after every job ran: the repeat never reached Meta.
    assert len(await capi.received()) == 5
    async with capi.stack.server.deps.db.unit_of_work(capi.admin) as session:
        audit = list(
            await session.scalars(
                select(AuditEntry.details).where(AuditEntry.action == "capi.config_saved")
            )
        )
    assert len(audit) == 1 and capi.token not in str(audit)


async def test_value_is_sent_only_when_enabled_and_disabled_events_are_not_sent(
    capi: Capi,
) -> None:
    await capi.setup(
        eventos_habilitados=pb.CapiEnabledEvents(lead=False, schedule=True, mql=True, won=True),
        config_eventos=pb.CapiEventSettings(won=pb.CapiWonEventSettings(enviar_valor=False)),
    )
    skipped = await capi.publish(epb.PIPELINE_EVENT_TYPE_CONTACT_CREATED)
    assert not skipped.jobs
    await capi.publish(epb.PIPELINE_EVENT_TYPE_OPPORTUNITY_WON, value=100.0, currency="BRL")
    [purchase] = await capi.wait_received(1)
    assert purchase["event_name"] == "Purchase"
    assert "value" not in purchase["custom_data"] and "currency" not in purchase["custom_data"]


async def test_one_lead_per_contact(capi: Capi) -> None:
    await capi.setup()
    contato = str(uuid.uuid4())
    first = await capi.publish(epb.PIPELINE_EVENT_TYPE_CONTACT_CREATED, contato_id=contato)
    await capi.wait_logs(1)
    second = await capi.publish(epb.PIPELINE_EVENT_TYPE_CONTACT_CREATED, contato_id=contato)
    assert first.jobs and not second.jobs  # recorded, not sent again
    await capi.publish(epb.PIPELINE_EVENT_TYPE_MQL, contato_id=contato)
    events = await capi.wait_received(2)
    assert [e["event_name"] for e in events] == ["Lead", "CompleteRegistration"]


async def test_bad_input_changes_nothing(capi: Capi) -> None:
    await capi.setup()
    bad = [
        {"event_type": epb.PIPELINE_EVENT_TYPE_OPPORTUNITY_WON, "oportunidade_id": ""},
        {"event_type": epb.PIPELINE_EVENT_TYPE_MEETING_SCHEDULED, "meeting_id": ""},
        {"event_type": epb.PIPELINE_EVENT_TYPE_MQL, "contato_id": "nope"},
        {"event_type": epb.PIPELINE_EVENT_TYPE_MQL, "value": -1.0},
        {"event_type": epb.PIPELINE_EVENT_TYPE_MQL, "currency": "REAIS"},
        {"event_type": epb.PIPELINE_EVENT_TYPE_UNSPECIFIED},
        {
            "event_type": epb.PIPELINE_EVENT_TYPE_MQL,
            "occurred_at": dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        },
        {"event_type": epb.PIPELINE_EVENT_TYPE_MQL, "contato": epb.ContactData(pais="Brasil")},
        {"event_type": epb.PIPELINE_EVENT_TYPE_MQL, "contato": epb.ContactData(email="x@")},
    ]
    for fields in bad:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await capi.publish(**fields)  # type: ignore[arg-type]
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
    member = capi.stack.server.metadata(
        Caller(role=Role.MEMBER, tenant_id=capi.tenant.id, user_id=capi.tenant.member_id)
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await capi.events.PublishPipelineEvent(
            epb.PublishPipelineEventRequest(
                request_id="x",
                event_type=epb.PIPELINE_EVENT_TYPE_MQL,
                contato_id=str(uuid.uuid4()),
            ),
            metadata=member,
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await capi.capi.SaveCapiConfig(
            pb.SaveCapiConfigRequest(pixel_id="abc"), metadata=capi.stack.md(capi.admin)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await capi.logs() == []


async def test_meta_5xx_then_success(capi: Capi) -> None:
    await capi.setup()
    await capi.stack.control(
        "faults",
        {"pattern": f"/{capi.pixel_id}/events", "kind": "server_error", "status": 503, "times": 1},
    )
    await capi.publish(epb.PIPELINE_EVENT_TYPE_MQL)
    assert len(await capi.wait_received(1)) == 1
    [entry] = await capi.wait_logs(1)
    assert entry.status == pb.CAPI_LOG_STATUS_SENT and entry.tentativas == 2


async def test_stale_event_is_closed_and_never_sent(capi: Capi) -> None:
    await capi.setup()
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=8)
    await capi.publish(epb.PIPELINE_EVENT_TYPE_MQL, occurred_at=old)
    fresh = await capi.publish(epb.PIPELINE_EVENT_TYPE_OPPORTUNITY_LOST)
    [event] = await capi.wait_received(1)
    assert event["event_id"] == fresh.event_id
    logs = {e.event_name: e for e in await capi.wait_logs(2)}
    stale = logs["CompleteRegistration"]
    assert stale.status == pb.CAPI_LOG_STATUS_FAILED
    assert "7 dias" in stale.response_body and stale.response_code == 0
    # The statistics: one sent, the stale one apart, the last send after the sent row's log.
    stats = await capi.capi.GetCapiStats(
        pb.GetCapiStatsRequest(), metadata=capi.stack.md(capi.admin)
    )
    assert (stats.eventos_enviados, stats.eventos_sucesso, stats.eventos_falha) == (1, 1, 0)
    assert (stats.eventos_nao_enviados, stats.eventos_pendentes) == (1, 0)
    assert stats.taxa_sucesso == 100.0
    sent = logs["lead_lost"]
    assert stats.ultimo_envio.ToDatetime(dt.UTC) > sent.criado_em.ToDatetime(dt.UTC)
    assert stats.ultimo_envio.ToDatetime(dt.UTC) <= dt.datetime.now(dt.UTC)
    per_event = {s.event_name: s for s in stats.por_evento}
    assert (
        per_event["CompleteRegistration"].enviados,
        per_event["CompleteRegistration"].nao_enviados,
    ) == (0, 1)
    assert (per_event["lead_lost"].enviados, per_event["lead_lost"].nao_enviados) == (1, 0)


async def test_one_invalid_event_in_a_batch_of_fifty(capi: Capi) -> None:
    await capi.setup()
    worker = capi.stack.server.deps.worker
    await worker.stop()
    try:
        ids = [f"batch-{i}-{uuid.uuid4()}" for i in range(50)]
        await capi.stack.control("capi/reject", {"event_ids": [ids[17]]})
        for request_id in ids:
            await capi.publish(epb.PIPELINE_EVENT_TYPE_MQL, request_id)
    finally:
        await worker.start()
    events = await capi.wait_received(49)
    assert ids[17] not in {e["event_id"] for e in events}
    logs = await capi.wait_logs(50)
    failed = [e for e in logs if e.status == pb.CAPI_LOG_STATUS_FAILED]
    assert [e.event_id for e in failed] == [ids[17]]
    assert "rejected" in failed[0].response_body and failed[0].response_code == 400
    got = await capi.stack.http.get(
        f"{capi.stack.graph_url}/_control/capi/pixels/{capi.pixel_id}/events"
    )
    # A backlog leaves in batches: far fewer requests than events, even with the bisection.
    assert got.json()["requests"] < 25


async def test_revoked_token_parks_events_until_a_new_token(capi: Capi) -> None:
    await capi.setup()
    await capi.stack.control("capi/tokens/revoke", {"access_token": capi.token})
    first = await capi.publish(epb.PIPELINE_EVENT_TYPE_MQL)
    job_id = uuid.UUID(first.jobs[0].job_id)
    md = capi.stack.md(capi.admin)

    async def parked() -> PendingEvent | None:
        async with capi.stack.server.deps.db.unit_of_work(capi.admin) as session:
            job = await session.get(PendingEvent, job_id, populate_existing=True)
        assert job is not None
        later = job.proxima_tentativa > dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        return job if job.status == "pending" and later else None

    job = await poll(parked)
    assert job.tentativas == 0  # the refusal is the token's, not the event's
    config = (await capi.capi.GetCapiConfig(pb.GetCapiConfigRequest(), metadata=md)).config
    assert config.status == resources_pb2.CONNECTION_STATUS_REVOKED
    # Further events are not sent with the dead token: they wait too, without a Meta call.
    second = await capi.publish(epb.PIPELINE_EVENT_TYPE_MQL)
    job_id = uuid.UUID(second.jobs[0].job_id)
    await poll(parked)
    assert [e.status for e in await capi.logs()] == [pb.CAPI_LOG_STATUS_PENDING] * 2
    async with capi.stack.server.deps.db.unit_of_work(capi.admin) as session:
        open_alerts = list(
            await session.scalars(select(Alert).where(Alert.kind == "token_refresh_failed"))
        )
    assert len(open_alerts) == 1 and "resolvido_em" not in (open_alerts[0].details or {})

    # A new token recovers the configuration and sends what waited.
    fresh = await capi.stack.control(f"capi/pixels/{capi.pixel_id}/tokens")
    saved = await capi.capi.SaveCapiConfig(
        pb.SaveCapiConfigRequest(access_token=fresh["access_token"]), metadata=md
    )
    assert saved.config.status == resources_pb2.CONNECTION_STATUS_ACTIVE
    events = await capi.wait_received(2)
    assert {e["event_id"] for e in events} == {first.event_id, second.event_id}
    async with capi.stack.server.deps.db.unit_of_work(capi.admin) as session:
        [alert] = await session.scalars(select(Alert).where(Alert.kind == "token_refresh_failed"))
        changes = list(
            await session.scalars(
                select(OutboxEvent.payload)
                .where(OutboxEvent.tipo == "CONNECTION_CHANGED")
                .order_by(OutboxEvent.sequencia)
            )
        )
    assert "resolvido_em" in (alert.details or {})
    assert [c["requires_reconnect"] for c in changes] == [True, False]

    # A second revocation alerts again (the first alert was closed).
    await capi.stack.control("capi/tokens/revoke", {"access_token": fresh["access_token"]})
    await capi.publish(epb.PIPELINE_EVENT_TYPE_MQL)

    async def alerted_again() -> bool | None:
        async with capi.stack.server.deps.db.unit_of_work(capi.admin) as session:
            alerts = list(
                await session.scalars(select(Alert).where(Alert.kind == "token_refresh_failed"))
            )
        return True if len(alerts) == 2 else None

    await poll(alerted_again)


async def test_breaker_open_postpones_without_spending_attempts(capi: Capi) -> None:
    await capi.setup()
    breaker = capi.stack.server.deps.breakers.get("meta_capi")
    for _ in range(breaker.config.failure_threshold):
        from server.providers.errors import ProviderServerError

        breaker.record_failure(breaker.allow(), ProviderServerError("down", provider="meta_capi"))
    try:
        published = await capi.publish(epb.PIPELINE_EVENT_TYPE_MQL)
        job_id = uuid.UUID(published.jobs[0].job_id)

        async def postponed() -> PendingEvent | None:
            async with capi.stack.server.deps.db.unit_of_work(capi.admin) as session:
                job = await session.get(PendingEvent, job_id, populate_existing=True)
            assert job is not None
            due_later = job.proxima_tentativa > dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
            return job if job.status == "pending" and due_later else None

        job = await poll(postponed)
        assert job.tentativas == 0
        assert await capi.received() == []
    finally:
        breaker._close()


async def test_lead_ads_contact_events_carry_lead_id_unhashed(
    capi: Capi, owner_engine: AsyncEngine
) -> None:
    await capi.setup()
    stack = capi.stack
    await stack.set_meta_app()
    await stack.connect(capi.admin)
    funil, novos, _ = await make_pipeline(owner_engine, capi.tenant.id)
    await stack.map_form(capi.admin, funil, novos)
    leadgen_id = await stack.submit(
        {"full_name": "Joao Silva", "email": KNOWN["em"][0], "phone_number": KNOWN["ph"][0]}
    )
    await stack.drain()
    [lead] = await capi.wait_received(1)
    assert lead["event_name"] == "Lead" and lead["user_data"]["lead_id"] == leadgen_id
    assert lead["user_data"]["em"] == KNOWN["em"][1] and lead["user_data"]["ph"] == KNOWN["ph"][1]
    assert lead["event_id"] == f"capi:lead:{leadgen_id}"
    async with stack.server.deps.db.unit_of_work(capi.admin) as session:
        contato = await session.scalar(
            select(Contact.id).where(Contact.email == "joao.silva@example.com")
        )
    assert contato is not None
    # The CRM's own CONTACT_CREATED for that contact: recorded, the Lead is not sent again.
    repeat = await capi.publish(epb.PIPELINE_EVENT_TYPE_CONTACT_CREATED, contato_id=str(contato))
    assert not repeat.jobs and not repeat.deduplicated
    await capi.publish(
        epb.PIPELINE_EVENT_TYPE_MQL, contato_id=str(contato), contato=epb.ContactData()
    )
    events = await capi.wait_received(2)
    mql = events[1]
    assert mql["event_name"] == "CompleteRegistration"
    assert mql["user_data"]["lead_id"] == leadgen_id
    assert mql["user_data"]["em"] == KNOWN["em"][1]


async def test_test_event_reports_meta_answer_and_is_recorded(capi: Capi) -> None:
    await capi.setup()
    md = capi.stack.md(capi.admin)
    ok = await capi.capi.TestCapiConnection(
        pb.TestCapiConnectionRequest(test_event_code="TEST4242", event_name="Purchase"),
        metadata=md,
    )
    assert ok.sucesso and ok.events_received == 1 and ok.fbtrace_id and ok.response_code == 200
    got = await capi.stack.http.get(
        f"{capi.stack.graph_url}/_control/capi/pixels/{capi.pixel_id}/events"
    )
    [test_event] = got.json()["test_events"]
    assert test_event["test_event_code"] == "TEST4242" and test_event["event_id"] == ok.event_id
    assert got.json()["events"] == []
    config = (await capi.capi.GetCapiConfig(pb.GetCapiConfigRequest(), metadata=md)).config
    assert config.ultimo_teste_sucesso and config.HasField("ultimo_teste")

    # Testing other credentials before saving them: Meta's refusal comes back in the body.
    bad = await capi.capi.TestCapiConnection(
        pb.TestCapiConnectionRequest(pixel_id=capi.pixel_id, access_token="EAAwrongtoken"),
        metadata=md,
    )
    assert not bad.sucesso and bad.response_code == 400
    assert "Meta recusou" in bad.mensagem and "EAAwrongtoken" not in bad.mensagem
    config = (await capi.capi.GetCapiConfig(pb.GetCapiConfigRequest(), metadata=md)).config
    assert config.ultimo_teste_sucesso  # the saved configuration's test still stands

    tests = await capi.logs()
    assert len(tests) == 2 and all(e.teste for e in tests)
    failed = await capi.logs(status=pb.CAPI_LOG_STATUS_FAILED)
    assert [e.event_id for e in failed] == [bad.event_id]
    stats = await capi.capi.GetCapiStats(pb.GetCapiStatsRequest(period_days=7), metadata=md)
    assert stats.eventos_enviados == 0  # test events are not the pipeline's


async def test_nothing_saved_gets_defaults_and_test_needs_a_config(capi: Capi) -> None:
    md = capi.stack.md(capi.admin)
    config = (await capi.capi.GetCapiConfig(pb.GetCapiConfigRequest(), metadata=md)).config
    assert not config.id and not config.ativo and config.eventos_habilitados.lead
    assert config.config_eventos.won.enviar_valor
    assert config.status == resources_pb2.CONNECTION_STATUS_DISCONNECTED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await capi.capi.TestCapiConnection(pb.TestCapiConnectionRequest(), metadata=md)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await capi.capi.SaveCapiConfig(pb.SaveCapiConfigRequest(pixel_id="123"), metadata=md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # the token is required
    published = await capi.publish(epb.PIPELINE_EVENT_TYPE_MQL)
    assert not published.jobs  # nothing configured is not an error


async def test_tenant_without_capi_retries_fails_after_one_attempt(
    capi: Capi, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(capi.tenant.id)}
        )
        await conn.execute(
            text(
                "INSERT INTO configuracoes_tenant (organizacao_id, configuracoes_extra) VALUES"
                ' (:t, \'{"retry_config": {"desativar_retry_capi": true}}\')'
            ),
            {"t": capi.tenant.id},
        )
    await capi.setup()
    await capi.stack.control(
        "faults",
        {"pattern": f"/{capi.pixel_id}/events", "kind": "server_error", "status": 500, "times": 1},
    )
    published = await capi.publish(epb.PIPELINE_EVENT_TYPE_MQL)
    [entry] = await capi.wait_logs(1)
    assert entry.status == pb.CAPI_LOG_STATUS_FAILED and entry.tentativas == 1
    assert entry.response_code == 500

    async def dead_lettered() -> bool | None:
        # The worker records the job's outcome after the handler's own transaction.
        async with capi.stack.server.deps.db.unit_of_work(capi.admin) as session:
            job = await session.get(PendingEvent, uuid.UUID(published.jobs[0].job_id))
        return True if job is not None and job.status == "failed" else None

    assert await poll(dead_lettered)  # dead-lettered, retriable by an admin


async def test_unknown_pixel_fails_the_batch_in_one_call_without_splitting(capi: Capi) -> None:
    await capi.setup()
    md = capi.stack.md(capi.admin)
    # Four events wait behind a dead token, so they leave together in one batch.
    await capi.stack.control("capi/tokens/revoke", {"access_token": capi.token})
    for _ in range(4):
        await capi.publish(epb.PIPELINE_EVENT_TYPE_MQL)

    async def parked() -> bool | None:
        async with capi.stack.server.deps.db.unit_of_work(capi.admin) as session:
            jobs = list(
                await session.scalars(
                    select(PendingEvent).where(PendingEvent.operacao == "capi_event")
                )
            )
        far = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        return True if len(jobs) == 4 and all(j.proxima_tentativa > far for j in jobs) else None

    await poll(parked)
    unknown = "990000000000001"
    fresh = await capi.stack.control(f"capi/pixels/{capi.pixel_id}/tokens")
    await capi.capi.SaveCapiConfig(
        pb.SaveCapiConfigRequest(pixel_id=unknown, access_token=fresh["access_token"]),
        metadata=md,
    )
    logs = await capi.wait_logs(4)
    assert {e.status for e in logs} == {pb.CAPI_LOG_STATUS_FAILED}
    assert all("does not exist" in e.response_body for e in logs)
    log = (await capi.stack.http.get(f"{capi.stack.graph_url}/_control/requests")).json()
    calls = [r for r in log if r["path"].endswith(f"/{unknown}/events")]
    assert len(calls) == 1  # not split into 2N-1 requests


async def test_event_gone_stale_while_waiting_is_closed_not_left_pending(capi: Capi) -> None:
    from server.conversions import load_config, meta_event, record_pending
    from server.resilience.worker import tenant_service

    await capi.setup()
    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=6)
    event = meta_event(crm_event="mql", event_id="waited-1", event_time=when, user_data={})
    facts = {"contato_id": str(uuid.uuid4())}
    db = capi.stack.server.deps.db
    for days_later in (0, 2):  # logged pending, then its job runs after 7 days have passed
        async with db.unit_of_work(tenant_service(capi.tenant.id)) as session:
            cfg = await load_config(session)
            assert cfg is not None
            now = dt.datetime.now(dt.UTC) + dt.timedelta(days=days_later)
            assert await record_pending(session, capi.tenant.id, cfg, event, facts, now) is (
                days_later > 0
            )
    [entry] = await capi.logs()
    assert entry.status == pb.CAPI_LOG_STATUS_FAILED and "7 dias" in entry.response_body


async def test_one_request_id_from_two_callers_at_once_is_recorded_once(capi: Capi) -> None:
    import asyncio

    await capi.setup()
    request = epb.PublishPipelineEventRequest(
        request_id=f"same-{uuid.uuid4()}",
        event_type=epb.PIPELINE_EVENT_TYPE_MQL,
        contato_id=str(uuid.uuid4()),
        contato=CONTACT,
    )
    callers = [capi.service, capi.admin]
    answers = await asyncio.gather(
        *(capi.events.PublishPipelineEvent(request, metadata=capi.stack.md(c)) for c in callers)
    )
    assert len({a.id for a in answers}) == 1
    assert sorted(a.deduplicated for a in answers) == [False, True]
    [event] = await capi.wait_received(1)
    assert event["event_id"] == request.request_id


async def test_backlog_over_a_thousand_events_leaves_in_two_batches(capi: Capi) -> None:
    import asyncio

    await capi.setup()
    worker = capi.stack.server.deps.worker
    await worker.stop()
    try:
        for start in range(0, 1001, 50):
            await asyncio.gather(
                *(
                    capi.publish(
                        epb.PIPELINE_EVENT_TYPE_MQL,
                        f"big-{i}-{uuid.uuid4()}",
                        contato=epb.ContactData(email=f"big{i}@example.com"),
                    )
                    for i in range(start, min(start + 50, 1001))
                )
            )
    finally:
        await worker.start()

    async def all_sent() -> list[dict[str, Any]] | None:
        events = await capi.received()
        return events if len(events) >= 1001 else None

    # Every one of the 1,001 jobs runs (most find their event already sent): give it time.
    events = await poll(all_sent, within=180)
    assert len({e["event_id"] for e in events}) == 1001
    got = await capi.stack.http.get(
        f"{capi.stack.graph_url}/_control/capi/pixels/{capi.pixel_id}/events"
    )
    assert got.json()["requests"] == 2  # 1,000 (Meta's most per request), then 1
    async with capi.stack.server.deps.db.unit_of_work(capi.admin) as session:
        statuses = list(await session.scalars(select(ConversionsApiLog.status)))
    assert len(statuses) == 1001 and set(statuses) == {"sent"}


async def test_answers_kept_when_an_attempt_times_out_mid_batch(capi: Capi) -> None:
    await capi.setup()
    deps = capi.stack.server.deps
    await deps.worker.stop()
    try:
        ids = [f"split-{i}-{uuid.uuid4()}" for i in range(50)]
        await capi.stack.control("capi/reject", {"event_ids": [ids[40]]})
        for request_id in ids:
            await capi.publish(epb.PIPELINE_EVENT_TYPE_MQL, request_id)
        # The batch of 50 is rejected and halved; the first half is taken, the second half's
        # request hangs past the attempt's time limit.
        await capi.stack.http.delete(f"{capi.stack.graph_url}/_control/faults")
        await capi.stack.control(
            "faults",
            {
                "pattern": f"/{capi.pixel_id}/events$",
                "method": "POST",
                "kind": "server_error",
                "status": 503,
                "skip": 2,
                "hang_s": 3.0,
            },
        )
        short = Worker(
            deps.db,
            deps.jobs,
            deps.breakers,
            deps.clock,
            concurrency=1,
            policy_lookup=lambda name, cfg: replace(policy_for(name, cfg), timeout_s=1.0),
        )

        async def fault_hit() -> bool | None:
            await short.run_once()
            faults = await capi.stack.http.get(f"{capi.stack.graph_url}/_control/faults")
            return True if faults.json()[0]["hits"] else None

        await poll(fault_hit)
        logs = await capi.logs()
        sent = [e for e in logs if e.status == pb.CAPI_LOG_STATUS_SENT]
        assert len(sent) == 25 and all(e.tentativas == 1 for e in sent)
        assert sum(e.status == pb.CAPI_LOG_STATUS_PENDING for e in logs) == 25
    finally:
        await capi.stack.http.delete(f"{capi.stack.graph_url}/_control/faults")
        await deps.worker.start()
    await capi.wait_logs(50)
    events = await capi.wait_received(49)
    # Every accepted event reached Meta once: the half taken before the timeout is not re-sent.
    assert sorted(e["event_id"] for e in events) == sorted(set(ids) - {ids[40]})
    [failed] = [e for e in await capi.logs() if e.status == pb.CAPI_LOG_STATUS_FAILED]
    assert failed.event_id == ids[40]
