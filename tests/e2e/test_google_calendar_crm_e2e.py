"""Google Calendar and the CRM link, end to end: a meeting the CRM schedules
(PublishPipelineEvent MEETING_SCHEDULED with the meeting's facts) reaches its owner's
calendar through the queue, once; changes made in Google reach a resumed change-feed
consumer once; a sync reads Google with no transaction open and one at a time."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from grpc_status import rpc_status
from renove.conexoes.v1 import connections_service_pb2 as cpb
from renove.conexoes.v1 import connections_service_pb2_grpc as cpb_grpc
from renove.conexoes.v1 import crm_events_service_pb2 as epb
from renove.conexoes.v1 import crm_events_service_pb2_grpc as epb_grpc
from renove.conexoes.v1 import google_calendar_service_pb2 as gpb
from renove.conexoes.v1 import google_calendar_service_pb2_grpc as gpb_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.auth.caller import Caller, Role
from server.google_calendar import sync
from server.google_calendar.sync_lease import lock_key
from server.outbox import record_change
from server.protoconv import timestamp
from tests.conftest import MigratedDatabase, Tenant
from tests.e2e.gateway_stack import field_violations
from tests.support.databases import isolated_database_fixture, isolated_owner_engine_fixture
from tests.support.google_stack import GoogleStack, connect, google_stack, poll

database = isolated_database_fixture()
owner_engine = isolated_owner_engine_fixture()
START = dt.datetime(2026, 4, 14, 13, 0, tzinfo=dt.UTC)
OCCURRED = dt.datetime(2026, 4, 1, 12, 0, tzinfo=dt.UTC)
CONTACT_EMAIL = "lead@empresa.com"
CONTACT = uuid.uuid4()


@pytest.fixture(scope="module")
async def stack(
    database: MigratedDatabase, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GoogleStack]:
    async with google_stack(database.owner_url, str(tmp_path_factory.mktemp("gcal-crm"))) as s:
        yield s


async def _as_owner(owner_engine: AsyncEngine, tenant: uuid.UUID, sql: str, **params: Any) -> Any:
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant)}
        )
        return await conn.execute(text(sql), params)


@pytest.fixture(scope="module")
async def tenant(stack: GoogleStack, owner_engine: AsyncEngine) -> Tenant:
    """A tenant whose first member connected Google (primary calendar, Meet on by default);
    the second member did not; a third user left the company."""
    org, admin = uuid.uuid4(), uuid.uuid4()
    members = (uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    await _as_owner(
        owner_engine, org, "INSERT INTO organizacoes_saas (id, nome) VALUES (:i, 'O')", i=org
    )
    for user, role in ((admin, "admin"), *((m, "member") for m in members)):
        await _as_owner(
            owner_engine,
            org,
            "INSERT INTO usuarios (id, organizacao_id, nome, email, role, ativo)"
            " VALUES (:id, :o, :n, :e, :r, :a)",
            id=user,
            o=org,
            n=role,
            e=f"{user.hex[:8]}@x.com",
            r=role,
            a=user != members[2],
        )
    tenant = Tenant(id=org, admin_id=admin, members=members)
    await connect(stack, _member(tenant))
    return tenant


def _member(tenant: Tenant, index: int = 0) -> Caller:
    return Caller(role=Role.MEMBER, tenant_id=tenant.id, user_id=tenant.members[index])


def _core(tenant: Tenant) -> Caller:
    return Caller(role=Role.SERVICE, tenant_id=tenant.id)


def _scheduled(
    meeting: uuid.UUID,
    owner: uuid.UUID,
    *,
    request_id: str | None = None,
    titulo: str = "Apresentacao da proposta",
    occurred: dt.datetime = OCCURRED,
    start: dt.datetime = START,
    minutes: int = 45,
    contato: uuid.UUID | None = None,
) -> epb.PublishPipelineEventRequest:
    return epb.PublishPipelineEventRequest(
        request_id=request_id or f"{meeting}:scheduled",
        event_type=epb.PIPELINE_EVENT_TYPE_MEETING_SCHEDULED,
        occurred_at=timestamp(occurred),
        contato_id=str(contato or CONTACT),
        meeting_id=str(meeting),
        contato=epb.ContactData(email=CONTACT_EMAIL, primeiro_nome="Joao"),
        reuniao=epb.MeetingData(
            titulo=titulo,
            descricao="Proposta comercial",
            inicio=timestamp(start),
            fim=timestamp(start + dt.timedelta(minutes=minutes)),
            usuario_id=str(owner),
        ),
    )


async def _publish(
    stack: GoogleStack, tenant: Tenant, request: epb.PublishPipelineEventRequest
) -> epb.PublishPipelineEventResponse:
    return await epb_grpc.CrmEventsServiceStub(stack.server.channel).PublishPipelineEvent(
        request, metadata=stack.md(_core(tenant))
    )


async def _meeting_row(owner_engine: AsyncEngine, tenant: Tenant, meeting: uuid.UUID) -> Any:
    result = await _as_owner(
        owner_engine, tenant.id, "SELECT * FROM meetings WHERE id = :m", m=meeting
    )
    return result.one_or_none()


async def _events_of(stack: GoogleStack, calendar: str, meeting: uuid.UUID) -> list[dict[str, Any]]:
    items = (await stack.control_get(f"calendars/{calendar}/events"))["items"]
    return [
        e
        for e in items
        if (e.get("extendedProperties") or {}).get("private", {}).get("crm_meeting_id")
        == str(meeting)
    ]


async def _jobs(owner_engine: AsyncEngine, tenant: Tenant, meeting: uuid.UUID) -> int:
    result = await _as_owner(
        owner_engine,
        tenant.id,
        "SELECT count(*) FROM eventos_pendentes WHERE operacao = 'google_calendar_create'"
        " AND payload->>'meeting_id' = :m",
        m=str(meeting),
    )
    return int(result.scalar_one())


async def test_a_meeting_the_crm_schedules_reaches_the_owners_calendar_once(
    stack: GoogleStack, tenant: Tenant, owner_engine: AsyncEngine
) -> None:
    owner = tenant.members[0]
    calendar = "joao.silva@gmail.com"
    meeting = uuid.uuid4()
    first = await _publish(stack, tenant, _scheduled(meeting, owner))
    (job,) = [j for j in first.jobs if j.tipo == "google_calendar_create"]
    assert job.destino == calendar

    async def linked() -> Any:
        row = await _meeting_row(owner_engine, tenant, meeting)
        return row if row is not None and row.google_event_id else None

    row = await poll(linked)
    assert row.titulo == "Apresentacao da proposta" and row.usuario_id == owner
    assert row.inicio == START and row.crm_atualizado_em == OCCURRED
    assert row.google_meet_link and row.google_meet_link.startswith("https://meet.google.com/")
    (event,) = await _events_of(stack, calendar, meeting)
    assert event["id"] == row.google_event_id
    assert [a["email"] for a in event["attendees"]] == [CONTACT_EMAIL]
    assert event["_sendUpdates"] == "all"
    assert event["conferenceData"]["createRequest"]["status"]["statusCode"] == "success"
    assert event["hangoutLink"] == row.google_meet_link

    # The same publish again, and another publish about the same meeting: nothing more.
    again = await _publish(stack, tenant, _scheduled(meeting, owner))
    assert again.deduplicated
    other = await _publish(stack, tenant, _scheduled(meeting, owner, request_id=f"{meeting}:2"))
    assert not other.deduplicated and not [j for j in other.jobs if j.tipo.startswith("google")]
    assert await _jobs(owner_engine, tenant, meeting) == 1
    assert len(await _events_of(stack, calendar, meeting)) == 1


async def test_a_member_without_google_gets_the_meeting_and_no_job(
    stack: GoogleStack, tenant: Tenant, owner_engine: AsyncEngine
) -> None:
    meeting = uuid.uuid4()
    answer = await _publish(stack, tenant, _scheduled(meeting, tenant.members[1]))
    assert [j.tipo for j in answer.jobs if j.tipo.startswith("google")] == []
    row = await _meeting_row(owner_engine, tenant, meeting)
    assert row is not None and row.usuario_id == tenant.members[1]
    assert row.google_event_id is None and row.contato_id is not None
    assert await _jobs(owner_engine, tenant, meeting) == 0


async def test_an_older_publish_never_overwrites_a_newer_one(
    stack: GoogleStack, tenant: Tenant, owner_engine: AsyncEngine
) -> None:
    meeting, owner = uuid.uuid4(), tenant.members[1]
    later = OCCURRED + dt.timedelta(hours=2)
    moved = START + dt.timedelta(days=1)
    await _publish(
        stack, tenant, _scheduled(meeting, owner, request_id="n", occurred=later, start=moved)
    )
    await _publish(stack, tenant, _scheduled(meeting, owner, request_id="o", titulo="Antigo"))
    row = await _meeting_row(owner_engine, tenant, meeting)
    assert row.inicio == moved and row.titulo == "Apresentacao da proposta"
    assert row.crm_atualizado_em == later


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"minutes": -30}, "reuniao.fim"),
        ({"titulo": "x" * 256}, "reuniao.titulo"),
        ({"titulo": "  "}, "reuniao.titulo"),
        ({"owner": "left"}, "reuniao.usuario_id"),
        ({"owner": "unknown"}, "reuniao.usuario_id"),
        ({"event_type": epb.PIPELINE_EVENT_TYPE_MQL}, "reuniao"),
    ],
)
async def test_a_bad_meeting_is_refused_and_changes_nothing(
    stack: GoogleStack,
    tenant: Tenant,
    owner_engine: AsyncEngine,
    change: dict[str, Any],
    field: str,
) -> None:
    meeting = uuid.uuid4()
    owner = {"left": tenant.members[2], "unknown": uuid.uuid4()}.get(
        change.pop("owner", ""), tenant.members[0]
    )
    event_type = change.pop("event_type", None)
    request = _scheduled(meeting, owner, **change)
    if event_type is not None:
        request.event_type = event_type
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _publish(stack, tenant, request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(refused.value)
    assert status is not None and field in status.message + str(status.details)
    assert await _meeting_row(owner_engine, tenant, meeting) is None
    recorded = await _as_owner(
        owner_engine,
        tenant.id,
        "SELECT count(*) FROM eventos_pipeline WHERE meeting_id = :m",
        m=meeting,
    )
    assert recorded.scalar_one() == 0


async def _last_sequence(owner_engine: AsyncEngine, tenant: Tenant) -> int:
    result = await _as_owner(
        owner_engine, tenant.id, "SELECT coalesce(max(sequencia), 0) FROM outbox_eventos"
    )
    return int(result.scalar_one())


async def _create(
    stack: GoogleStack, tenant: Tenant, owner_engine: AsyncEngine
) -> tuple[uuid.UUID, str]:
    """A meeting of the connected member with its Google event (no Meet), created by RPC."""
    meeting = uuid.uuid4()
    await _as_owner(
        owner_engine,
        tenant.id,
        "INSERT INTO meetings (id, organizacao_id, usuario_id, titulo, inicio, fim)"
        " VALUES (:id, :o, :u, 'Demo', :i, :f)",
        id=meeting,
        o=tenant.id,
        u=tenant.members[0],
        i=START,
        f=START + dt.timedelta(hours=1),
    )
    created = await gpb_grpc.GoogleCalendarServiceStub(
        stack.server.channel
    ).CreateGoogleCalendarEvent(
        gpb.CreateGoogleCalendarEventRequest(
            meeting_id=str(meeting),
            summary="Demo",
            start=timestamp(START),
            end=timestamp(START + dt.timedelta(hours=1)),
            add_google_meet=False,
            request_id=str(uuid.uuid4()),
        ),
        metadata=stack.md(_member(tenant)),
    )
    await _settled(stack, tenant)
    return meeting, created.event_id


async def _settled(stack: GoogleStack, tenant: Tenant) -> None:
    """Waits until Google's pushes were answered and their syncs ran, so a test's own sync
    calls meet no notification's sync."""

    async def idle() -> bool | None:
        if stack.fake.push.in_flight:
            return None
        async with stack.server.deps.db.unit_of_work(_core(tenant)) as session:
            busy = await session.scalar(
                text(
                    "SELECT count(*) FROM eventos_pendentes WHERE operacao ="
                    " 'google_calendar_notification' AND status IN ('pending', 'processing')"
                )
            )
        return True if busy == 0 else None

    await poll(idle)


async def test_a_change_in_google_reaches_a_resumed_feed_consumer_once(
    stack: GoogleStack, tenant: Tenant, owner_engine: AsyncEngine
) -> None:
    meeting, event_id = await _create(stack, tenant, owner_engine)
    await sync.sync_connection(stack.server.deps, tenant.id, await _connection_id(stack, tenant))
    after = await _last_sequence(owner_engine, tenant)  # the consumer stopped here

    moved = START + dt.timedelta(days=2)
    await stack.control(
        f"calendars/joao.silva@gmail.com/events/{event_id}",
        {"start": moved.isoformat(), "end": (moved + dt.timedelta(hours=1)).isoformat()},
    )

    async def followed() -> bool | None:
        row = await _meeting_row(owner_engine, tenant, meeting)
        return True if row.inicio == moved else None

    await poll(followed)
    # More notifications and syncs find nothing new; then a marker ends the reading.
    connection = await _connection_id(stack, tenant)
    assert await sync.sync_connection(stack.server.deps, tenant.id, connection) == 0
    async with stack.server.deps.db.unit_of_work(_core(tenant)) as session:
        await record_change(session, tenant.id, "CONTACT_CHANGED", {"marker": True})

    feed = _watch(stack, tenant, after)
    assert (await feed.read()).WhichOneof("kind") == "snapshot"
    changes: list[cpb.ConnectionEvent] = []
    async with asyncio.timeout(15):
        while True:
            message = await feed.read()
            if message.WhichOneof("kind") != "event":
                continue
            if message.event.kind == cpb.EVENT_KIND_CONTACT_CHANGED:
                break
            changes.append(message.event)
    feed.cancel()
    mine = [
        e
        for e in changes
        if e.kind == cpb.EVENT_KIND_CALENDAR_EVENT_CHANGED
        and e.payload["meeting_id"] == str(meeting)
    ]
    assert len(mine) == 1
    assert "inicio" in mine[0].payload["mudancas"] and mine[0].sequence > after
    assert mine[0].payload["inicio"] == moved.isoformat()


def _watch(stack: GoogleStack, tenant: Tenant, after: int) -> grpc.aio.UnaryStreamCall:
    return cpb_grpc.ConnectionsServiceStub(stack.server.channel).WatchEvents(
        cpb.WatchEventsRequest(after_sequence=after), metadata=stack.md(_core(tenant))
    )


async def _connection_id(stack: GoogleStack, tenant: Tenant) -> uuid.UUID:
    status = await gpb_grpc.GoogleCalendarServiceStub(stack.server.channel).GetGoogleConnection(
        gpb.GetGoogleConnectionRequest(), metadata=stack.md(_member(tenant))
    )
    return uuid.UUID(status.connection.id)


_OPEN_SYNC_TRANSACTIONS = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
    " AND query ILIKE '%conexoes_google%'"
)


async def test_a_sync_reads_google_with_no_transaction_open(
    stack: GoogleStack, tenant: Tenant, owner_engine: AsyncEngine
) -> None:
    connection = await _connection_id(stack, tenant)
    open_during_reads: list[int] = []

    async def look(request: httpx.Request) -> None:
        if request.method == "GET" and request.url.path.endswith("/events"):
            async with owner_engine.connect() as conn:
                open_during_reads.append(
                    int((await conn.execute(_OPEN_SYNC_TRANSACTIONS)).scalar_one())
                )

    hooks = stack.server.deps.http.event_hooks["request"]
    hooks.append(look)
    try:
        await sync.sync_connection(stack.server.deps, tenant.id, connection)
    finally:
        hooks.remove(look)
    assert open_during_reads and set(open_during_reads) == {0}


async def _lease(owner_engine: AsyncEngine, tenant: Tenant, connection: uuid.UUID) -> Any:
    result = await _as_owner(
        owner_engine,
        tenant.id,
        "SELECT sync_lease, sync_lease_ate, sync_pendente, sync_status FROM conexoes_google"
        " WHERE id = :c",
        c=connection,
    )
    return result.one()


async def test_one_sync_at_a_time_and_a_change_during_a_sync_is_read(
    stack: GoogleStack, tenant: Tenant, owner_engine: AsyncEngine
) -> None:
    connection = await _connection_id(stack, tenant)
    meeting, event_id = await _create(stack, tenant, owner_engine)
    deps = stack.server.deps
    await sync.sync_connection(deps, tenant.id, connection)

    # Another replica's sync holds the connection: this one leaves and asks it to read again.
    other = uuid.uuid4()
    async with deps.db.session_lock(lock_key(connection)) as held_there:
        assert held_there
        await _as_owner(
            owner_engine,
            tenant.id,
            "UPDATE conexoes_google SET sync_lease = :l,"
            " sync_lease_ate = now() + interval '5 minutes' WHERE id = :c",
            l=other,
            c=connection,
        )
        await stack.control(
            f"calendars/joao.silva@gmail.com/events/{event_id}",
            {"summary": "Renomeada", "push": False},
        )
        assert await sync.sync_connection(deps, tenant.id, connection) == 0
        held = await _lease(owner_engine, tenant, connection)
        assert held.sync_lease == other and held.sync_pendente
        assert (await _meeting_row(owner_engine, tenant, meeting)).titulo == "Demo"

    # That replica died (its session, and the lock with it, gone) with its lease still running
    # for minutes: the next sync takes over at once.
    assert await sync.sync_connection(deps, tenant.id, connection) == 1
    free = await _lease(owner_engine, tenant, connection)
    assert free.sync_lease is None and not free.sync_pendente and free.sync_status == "ok"
    assert (await _meeting_row(owner_engine, tenant, meeting)).titulo == "Renomeada"

    # Three syncs at once: one reads (and reads again for the others), one change recorded.
    await stack.control(
        f"calendars/joao.silva@gmail.com/events/{event_id}", {"summary": "De novo", "push": False}
    )
    counts = await asyncio.gather(
        *(sync.sync_connection(deps, tenant.id, connection) for _ in range(3))
    )
    assert sum(counts) == 1
    recorded = await _as_owner(
        owner_engine,
        tenant.id,
        "SELECT count(*) FROM outbox_eventos WHERE tipo = 'CALENDAR_EVENT_CHANGED'"
        " AND payload->>'meeting_id' = :m AND payload->>'mudancas' LIKE '%titulo%'",
        m=str(meeting),
    )
    assert recorded.scalar_one() == 2  # "Renomeada", then "De novo"
    assert (await _lease(owner_engine, tenant, connection)).sync_lease is None


async def test_the_meeting_travels_as_json_through_the_gateway(
    stack: GoogleStack, tenant: Tenant, owner_engine: AsyncEngine
) -> None:
    meeting = uuid.uuid4()
    admin = Caller(role=Role.ADMIN, tenant_id=tenant.id, user_id=tenant.admin_id)
    body: dict[str, Any] = {
        "request_id": f"{meeting}:json",
        "event_type": "meeting_scheduled",
        "occurred_at": "2026-04-01T12:00:00Z",
        "contato_id": str(CONTACT),
        "meeting_id": str(meeting),
        "reuniao": {
            "titulo": "Visita tecnica",
            "inicio": "2026-04-20T13:00:00Z",
            "fim": "2026-04-20T12:00:00Z",
            "usuario_id": str(tenant.members[1]),
        },
    }
    url = f"{stack.sidecar_url}/api/v1/conexoes/crm/eventos"
    headers = {"authorization": f"Bearer {stack.server.token(admin)}"}
    refused = await stack.http.post(url, json=body, headers=headers)
    assert refused.status_code == 400, refused.text
    assert "reuniao.fim" in field_violations(refused.json())
    assert await _meeting_row(owner_engine, tenant, meeting) is None

    body["reuniao"]["fim"] = "2026-04-20T14:00:00Z"
    accepted = await stack.http.post(url, json=body, headers=headers)
    assert accepted.status_code == 200, accepted.text
    row = await _meeting_row(owner_engine, tenant, meeting)
    assert row.titulo == "Visita tecnica" and row.usuario_id == tenant.members[1]
    assert row.fim == dt.datetime(2026, 4, 20, 14, 0, tzinfo=dt.UTC)
