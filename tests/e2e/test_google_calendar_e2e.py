"""Google Calendar end to end: a member connects through the browser (consent, PKCE, the
browser binding), chooses a calendar, creates a meeting's event with Meet, Google changes
it and pushes, the CRM meeting follows; cancel, 410 resync, channel renewal, token refresh,
denied consent, another browser, and another member who sees nothing of it."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from renove.conexoes.v1 import google_calendar_service_pb2 as pb
from renove.conexoes.v1 import google_calendar_service_pb2_grpc as pb_grpc
from renove.conexoes.v1 import resources_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.auth.caller import Caller, Role
from server.google_calendar import channels, scheduling, sync
from server.google_oauth import TESTING_KIND
from server.protoconv import timestamp
from tests.conftest import MakeTenant, MigratedDatabase, Tenant
from tests.support.crm_core import connection_changes, replayed_changes
from tests.support.databases import isolated_database_fixture, isolated_owner_engine_fixture
from tests.support.google_stack import GoogleStack, connect, google_stack, poll
from tests.support.google_stack import follow_callback as _callback
from tests.support.google_stack import start_auth as _start

database = isolated_database_fixture()
owner_engine = isolated_owner_engine_fixture()
VENDAS = "vendas@group.calendar.google.com"
START = dt.datetime(2026, 3, 10, 17, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
async def stack(
    database: MigratedDatabase, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GoogleStack]:
    async with google_stack(database.owner_url, str(tmp_path_factory.mktemp("gcal"))) as s:
        yield s


def _stub(stack: GoogleStack) -> pb_grpc.GoogleCalendarServiceStub:
    return pb_grpc.GoogleCalendarServiceStub(stack.server.channel)


def _member(tenant: Tenant, index: int = 0) -> Caller:
    return Caller(role=Role.MEMBER, tenant_id=tenant.id, user_id=tenant.members[index])


async def _meeting(owner_engine: AsyncEngine, tenant: Tenant, user: uuid.UUID) -> uuid.UUID:
    meeting = uuid.uuid4()
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
        )
        await conn.execute(
            text(
                "INSERT INTO meetings (id, organizacao_id, usuario_id, titulo, inicio, fim)"
                " VALUES (:id, :o, :u, 'Reuniao com Joao', :i, :f)"
            ),
            {
                "id": meeting,
                "o": tenant.id,
                "u": user,
                "i": START,
                "f": START + dt.timedelta(hours=1),
            },
        )
    return meeting


async def _meeting_row(owner_engine: AsyncEngine, tenant: Tenant, meeting: uuid.UUID) -> Any:
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
        )
        return (
            await conn.execute(text("SELECT * FROM meetings WHERE id = :id"), {"id": meeting})
        ).one()


async def _create(
    stack: GoogleStack, caller: Caller, meeting: uuid.UUID, **extra: Any
) -> pb.CreateGoogleCalendarEventResponse:
    return await _stub(stack).CreateGoogleCalendarEvent(
        pb.CreateGoogleCalendarEventRequest(
            meeting_id=str(meeting),
            summary="Reuniao com Joao",
            description="Discussao sobre proposta comercial",
            start=timestamp(START),
            end=timestamp(START + dt.timedelta(hours=1)),
            time_zone="America/Sao_Paulo",
            attendees=[pb.EventAttendee(email="lead@empresa.com")],
            request_id=str(uuid.uuid4()),
            **extra,
        ),
        metadata=stack.md(caller),
    )


async def _sandbox_event(stack: GoogleStack, calendar: str, event_id: str) -> dict[str, Any]:
    items = (await stack.control_get(f"calendars/{calendar}/events"))["items"]
    return next(e for e in items if e["id"] == event_id)


@pytest.fixture(scope="module")
async def connected(stack: GoogleStack, owner_engine: AsyncEngine) -> tuple[Tenant, Caller]:
    from tests.conftest import Tenant as T

    org, admin, members = uuid.uuid4(), uuid.uuid4(), (uuid.uuid4(), uuid.uuid4())
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(org)}
        )
        await conn.execute(
            text("INSERT INTO organizacoes_saas (id, nome) VALUES (:id, 'Org')"), {"id": org}
        )
        for user, role in ((admin, "admin"), (members[0], "member"), (members[1], "member")):
            await conn.execute(
                text(
                    "INSERT INTO usuarios (id, organizacao_id, nome, email, role)"
                    " VALUES (:id, :o, :n, :e, :r)"
                ),
                {"id": user, "o": org, "n": role, "e": f"{user.hex[:8]}@x.com", "r": role},
            )
    tenant = T(id=org, admin_id=admin, members=members)
    caller = _member(tenant)
    await connect(stack, caller)
    return tenant, caller


@pytest.fixture
async def on_vendas(stack: GoogleStack, connected: tuple[Tenant, Caller]) -> None:
    """The module's connection writes to the Vendas calendar, with Meet links, as the first
    test leaves it: a test run alone (or first) starts from the same place. Choosing the
    calendar it already has changes nothing."""
    _, caller = connected
    await _stub(stack).SelectGoogleCalendar(
        pb.SelectGoogleCalendarRequest(calendar_id=VENDAS, criar_google_meet=True),
        metadata=stack.md(caller),
    )


async def test_connect_choose_create_move_cancel(
    stack: GoogleStack, connected: tuple[Tenant, Caller], owner_engine: AsyncEngine
) -> None:
    tenant, caller = connected
    stub = _stub(stack)
    status = (
        await stub.GetGoogleConnection(pb.GetGoogleConnectionRequest(), metadata=stack.md(caller))
    ).connection
    assert status.status == resources_pb2.CONNECTION_STATUS_ACTIVE
    assert status.google_user_email == "joao.silva@gmail.com"
    assert status.calendar_id == "joao.silva@gmail.com"  # the primary, by default
    assert status.push_ativo and status.sync_status == "ok"
    listed = await stub.ListGoogleCalendars(
        pb.ListGoogleCalendarsRequest(), metadata=stack.md(caller)
    )
    assert {c.calendar_id for c in listed.calendars} == {"joao.silva@gmail.com", VENDAS}
    chosen = await stub.SelectGoogleCalendar(
        pb.SelectGoogleCalendarRequest(calendar_id=VENDAS, criar_google_meet=True),
        metadata=stack.md(caller),
    )
    assert chosen.connection.calendar_id == VENDAS and chosen.connection.calendar_name == "Vendas"
    with pytest.raises(grpc.aio.AioRpcError) as refused:  # read-only calendar
        await stub.SelectGoogleCalendar(
            pb.SelectGoogleCalendarRequest(calendar_id="feriados@group.v.calendar.google.com"),
            metadata=stack.md(caller),
        )
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND

    meeting = await _meeting(owner_engine, tenant, caller.user_id)  # type: ignore[arg-type]
    created = await _create(stack, caller, meeting, add_google_meet=True)
    assert created.google_meet_link.startswith("https://meet.google.com/")
    assert created.google_meet_status == "success"
    stored = await _sandbox_event(stack, VENDAS, created.event_id)
    assert stored["attendees"][0]["email"] == "lead@empresa.com"
    assert stored["_sendUpdates"] == "all"
    assert stored["conferenceData"]["createRequest"]["status"]["statusCode"] == "success"
    row = await _meeting_row(owner_engine, tenant, meeting)
    assert row.google_event_id == created.event_id
    assert row.google_meet_link == created.google_meet_link

    # Moved in Google: the push notification reaches the CRM meeting and the change feed.
    moved = START + dt.timedelta(days=1)
    bus = stack.server.deps.bus
    async with bus.subscribe(
        lambda e: e.kind == "CALENDAR_EVENT_CHANGED" and e.tenant_id == tenant.id
    ) as feed:
        await stack.control(
            f"calendars/{VENDAS}/events/{created.event_id}",
            {
                "start": moved.isoformat(),
                "end": (moved + dt.timedelta(hours=1)).isoformat(),
                "responses": {"lead@empresa.com": "declined"},
            },
        )
        async with asyncio.timeout(10):
            change = await anext(aiter(feed))
    assert change.data["meeting_id"] == str(meeting)
    assert "inicio" in change.data["mudancas"] and change.data["recusaram"] == ["lead@empresa.com"]
    row = await _meeting_row(owner_engine, tenant, meeting)
    assert row.inicio == moved
    assert row.participantes == [{"email": "lead@empresa.com", "response_status": "declined"}]

    cancelled = await stub.CancelGoogleCalendarEvent(
        pb.CancelGoogleCalendarEventRequest(id=created.event_id), metadata=stack.md(caller)
    )
    assert cancelled.meeting_id == str(meeting)
    gone = await _sandbox_event(stack, VENDAS, created.event_id)
    assert gone["status"] == "cancelled" and gone["_sendUpdates"] == "all"
    assert (await _meeting_row(owner_engine, tenant, meeting)).google_event_id is None


@pytest.mark.usefixtures("on_vendas")
async def test_a_retried_create_makes_one_event(
    stack: GoogleStack, connected: tuple[Tenant, Caller], owner_engine: AsyncEngine
) -> None:
    tenant, caller = connected
    meeting = await _meeting(owner_engine, tenant, caller.user_id)  # type: ignore[arg-type]
    request = pb.CreateGoogleCalendarEventRequest(
        meeting_id=str(meeting),
        summary="Demo",
        start=timestamp(START),
        end=timestamp(START + dt.timedelta(minutes=30)),
        add_google_meet=False,
        request_id="retry-" + uuid.uuid4().hex,
    )
    first = await _stub(stack).CreateGoogleCalendarEvent(request, metadata=stack.md(caller))
    again = await _stub(stack).CreateGoogleCalendarEvent(request, metadata=stack.md(caller))
    assert again.event_id == first.event_id and first.google_meet_link == ""
    items = (await stack.control_get(f"calendars/{VENDAS}/events"))["items"]
    assert sum(1 for e in items if e["summary"] == "Demo") == 1
    with pytest.raises(grpc.aio.AioRpcError) as twice:  # a second event for the meeting
        await _create(stack, caller, meeting)
    assert twice.value.code() == grpc.StatusCode.ALREADY_EXISTS

    # The server that made the event died before storing its answer: the repeat runs again
    # and answers with that event instead of refusing the meeting's own.
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("DELETE FROM idempotency_records WHERE request_id = :r"),
            {"r": request.request_id},
        )
    rerun = await _stub(stack).CreateGoogleCalendarEvent(request, metadata=stack.md(caller))
    assert rerun.event_id == first.event_id
    items = (await stack.control_get(f"calendars/{VENDAS}/events"))["items"]
    assert sum(1 for e in items if e["summary"] == "Demo") == 1


@pytest.mark.usefixtures("on_vendas")
async def test_bad_input_changes_nothing(
    stack: GoogleStack, connected: tuple[Tenant, Caller], owner_engine: AsyncEngine
) -> None:
    tenant, caller = connected
    meeting = await _meeting(owner_engine, tenant, caller.user_id)  # type: ignore[arg-type]
    before = len((await stack.control_get(f"calendars/{VENDAS}/events"))["items"])
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await _stub(stack).CreateGoogleCalendarEvent(
            pb.CreateGoogleCalendarEventRequest(
                meeting_id=str(meeting),
                summary="",
                start=timestamp(START),
                end=timestamp(START - dt.timedelta(hours=1)),
                attendees=[pb.EventAttendee(email="not-an-email")],
            ),
            metadata=stack.md(caller),
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len((await stack.control_get(f"calendars/{VENDAS}/events"))["items"]) == before


@pytest.mark.usefixtures("on_vendas")
async def test_expired_sync_token_means_a_full_resync(
    stack: GoogleStack, connected: tuple[Tenant, Caller], owner_engine: AsyncEngine
) -> None:
    tenant, caller = connected
    meeting = await _meeting(owner_engine, tenant, caller.user_id)  # type: ignore[arg-type]
    created = await _create(stack, caller, meeting, add_google_meet=False)
    await stack.control("sync-tokens/invalidate")
    await stack.control(f"calendars/{VENDAS}/events/{created.event_id}", {"summary": "Novo titulo"})

    async def retitled() -> bool | None:
        row = await _meeting_row(owner_engine, tenant, meeting)
        return True if row.titulo == "Novo titulo" else None

    await poll(retitled)
    status = (
        await _stub(stack).GetGoogleConnection(
            pb.GetGoogleConnectionRequest(), metadata=stack.md(caller)
        )
    ).connection
    assert status.sync_status == "ok" and status.sync_falhas == 0


@pytest.mark.usefixtures("on_vendas")
async def test_channel_renewal_opens_the_new_one_then_stops_the_old(
    stack: GoogleStack, connected: tuple[Tenant, Caller]
) -> None:
    tenant, caller = connected
    stub = _stub(stack)
    before = (
        await stub.GetGoogleConnection(pb.GetGoogleConnectionRequest(), metadata=stack.md(caller))
    ).connection
    async with stack.server.deps.db.unit_of_work(
        Caller(role=Role.SERVICE, tenant_id=tenant.id)
    ) as session:
        await session.execute(
            text(
                "UPDATE conexoes_google SET channel_expires_at = now() + interval '1 hour'"
                " WHERE id = :id"
            ),
            {"id": uuid.UUID(before.id)},
        )
    old = {
        c["id"]: c
        for c in await stack.control_get("channels")
        if c["calendarId"] == VENDAS and not c["stopped"]
    }
    renewed = await channels.renew_due(stack.server.deps)
    assert renewed[uuid.UUID(before.id)] is True
    now = {c["id"]: c for c in await stack.control_get("channels")}
    for channel_id in old:
        assert now[channel_id]["stopped"] is True
    live = [c for c in now.values() if c["calendarId"] == VENDAS and not c["stopped"]]
    assert len(live) == 1 and live[0]["id"] not in old
    assert live[0]["address"] == "https://crm.renove.test/webhooks/google-calendar"


@pytest.mark.usefixtures("on_vendas")
async def test_an_expired_access_token_is_refreshed_on_use(
    stack: GoogleStack, connected: tuple[Tenant, Caller]
) -> None:
    _, caller = connected
    refreshes = sum(g["refreshes"] for g in await stack.control_get("grants"))
    await stack.control("access-tokens/expire")  # Google answers 401 to the stored token
    listed = await _stub(stack).ListGoogleCalendars(
        pb.ListGoogleCalendarsRequest(), metadata=stack.md(caller)
    )
    assert len(listed.calendars) == 2
    assert sum(g["refreshes"] for g in await stack.control_get("grants")) == refreshes + 1


@pytest.mark.usefixtures("on_vendas")
async def test_another_member_sees_nothing_of_it(
    stack: GoogleStack, connected: tuple[Tenant, Caller], owner_engine: AsyncEngine
) -> None:
    tenant, caller = connected
    other = _member(tenant, 1)
    stub = _stub(stack)
    theirs = (
        await stub.GetGoogleConnection(pb.GetGoogleConnectionRequest(), metadata=stack.md(other))
    ).connection
    assert (
        theirs.status == resources_pb2.CONNECTION_STATUS_DISCONNECTED
        and not theirs.google_user_email
    )
    meeting = await _meeting(owner_engine, tenant, caller.user_id)  # type: ignore[arg-type]
    created = await _create(stack, caller, meeting, add_google_meet=False)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CancelGoogleCalendarEvent(
            pb.CancelGoogleCalendarEventRequest(id=created.event_id), metadata=stack.md(other)
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # not connected
    with pytest.raises(grpc.aio.AioRpcError) as hidden:  # nor can they use the meeting
        await _create(stack, other, meeting)
    assert hidden.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await _sandbox_event(stack, VENDAS, created.event_id))["status"] == "confirmed"


async def test_denied_consent_and_another_browser_change_nothing(
    stack: GoogleStack, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    caller = _member(tenant)
    url, cookie = await _start(stack, caller)
    denied = await _callback(stack, await stack.consent(url, "deny"), cookie)
    assert denied["status"] == ["erro"] and denied["motivo"] == ["ACCESS_DENIED"]
    url, _ = await _start(stack, caller)
    elsewhere = await _callback(stack, await stack.consent(url), None)
    assert elsewhere["motivo"] == ["STATE_BROWSER_MISMATCH"]
    url, cookie = await _start(stack, caller)
    narrow = await _callback(
        stack,
        await stack.consent(url, scope="https://www.googleapis.com/auth/calendar.events openid"),
        cookie,
    )
    assert narrow["motivo"] == ["MISSING_SCOPES"]
    status = (
        await _stub(stack).GetGoogleConnection(
            pb.GetGoogleConnectionRequest(), metadata=stack.md(caller)
        )
    ).connection
    assert status.status == resources_pb2.CONNECTION_STATUS_DISCONNECTED


async def test_disconnect_stops_the_channel_then_revokes(
    stack: GoogleStack, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    caller = _member(tenant)
    await stack.control("account", {"id": "2002", "email": "maria@gmail.com", "name": "Maria"})
    try:
        await connect(stack, caller)
    finally:
        await stack.control("account", {})
    stub = _stub(stack)
    await stub.SelectGoogleCalendar(
        pb.SelectGoogleCalendarRequest(calendar_id=VENDAS), metadata=stack.md(caller)
    )
    async with stack.server.deps.db.unit_of_work(
        Caller(role=Role.SERVICE, tenant_id=tenant.id)
    ) as session:
        channel_id = await session.scalar(
            text("SELECT channel_id FROM conexoes_google WHERE usuario_id = :u"),
            {"u": caller.user_id},
        )
    assert channel_id
    before = (
        await stub.GetGoogleConnection(pb.GetGoogleConnectionRequest(), metadata=stack.md(caller))
    ).connection
    done = await stub.DisconnectGoogle(
        pb.DisconnectGoogleRequest(request_id="d1"), metadata=stack.md(caller)
    )
    assert done.connection.status == resources_pb2.CONNECTION_STATUS_DISCONNECTED
    after = {c["id"]: c for c in await stack.control_get("channels")}
    assert after[channel_id]["stopped"] is True
    grants = [g for g in await stack.control_get("grants") if g["email"] == "maria@gmail.com"]
    assert grants and all(g["revoked"] for g in grants)
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await stub.ListGoogleCalendars(pb.ListGoogleCalendarsRequest(), metadata=stack.md(caller))
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as twice:
        await stub.DisconnectGoogle(pb.DisconnectGoogleRequest(), metadata=stack.md(caller))
    assert twice.value.code() == grpc.StatusCode.NOT_FOUND
    # Reconnecting keeps the same row (and its history).
    await connect(stack, caller)
    back = (
        await stub.GetGoogleConnection(pb.GetGoogleConnectionRequest(), metadata=stack.md(caller))
    ).connection
    assert back.id == before.id and back.status == resources_pb2.CONNECTION_STATUS_ACTIVE
    # The CRM core, resuming the change feed, learns each of these changes.
    calendar = resources_pb2.CONNECTION_TYPE_GOOGLE_CALENDAR
    changes = connection_changes(await replayed_changes(stack.server, tenant.id))
    assert changes == [(calendar, "active"), (calendar, "disconnected"), (calendar, "active")]


@pytest.mark.usefixtures("on_vendas")
async def test_a_meeting_the_crm_schedules_becomes_an_event_through_the_queue(
    stack: GoogleStack, connected: tuple[Tenant, Caller], owner_engine: AsyncEngine
) -> None:
    tenant, caller = connected
    meeting = await _meeting(owner_engine, tenant, caller.user_id)  # type: ignore[arg-type]
    contact = uuid.uuid4()
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
        )
        await conn.execute(
            text(
                "INSERT INTO contatos (id, organizacao_id, nome, email)"
                " VALUES (:id, :o, 'Joao', 'joao@cliente.com')"
            ),
            {"id": contact, "o": tenant.id},
        )
        await conn.execute(
            text("UPDATE meetings SET contato_id = :c WHERE id = :m"), {"c": contact, "m": meeting}
        )
    async with stack.server.deps.db.unit_of_work(
        Caller(role=Role.SERVICE, tenant_id=tenant.id)
    ) as session:
        for _ in range(2):  # the same pipeline event delivered twice queues one job
            await scheduling.enqueue_for_meeting(session, tenant.id, meeting, f"evt-{meeting}")

    async def linked() -> str | None:
        row = await _meeting_row(owner_engine, tenant, meeting)
        return str(row.google_event_id) if row.google_event_id else None

    event_id = await poll(linked)
    stored = await _sandbox_event(stack, VENDAS, event_id)
    assert [a["email"] for a in stored["attendees"]] == ["joao@cliente.com"]
    assert stored["_sendUpdates"] == "all" and stored["summary"] == "Reuniao com Joao"


@pytest.mark.usefixtures("on_vendas")
async def test_the_fallback_sync_catches_changes_without_a_notification(
    stack: GoogleStack, connected: tuple[Tenant, Caller], owner_engine: AsyncEngine
) -> None:
    tenant, caller = connected
    meeting = await _meeting(owner_engine, tenant, caller.user_id)  # type: ignore[arg-type]
    pushed = len(stack.fake.push.delivered)
    created = await _create(stack, caller, meeting, add_google_meet=False)
    await _quiet(stack, tenant, pushed)  # the creation's own notification has been synced
    await stack.control(
        f"calendars/{VENDAS}/events/{created.event_id}", {"status": "cancelled", "push": False}
    )
    async with stack.server.deps.db.unit_of_work(
        Caller(role=Role.SERVICE, tenant_id=tenant.id)
    ) as session:  # notifications stopped a while ago
        await session.execute(
            text(
                "UPDATE conexoes_google SET ultimo_sync = now() - interval '1 hour'"
                " WHERE usuario_id = :u"
            ),
            {"u": caller.user_id},
        )
    synced = await sync.sync_stale(stack.server.deps)
    assert sum(synced.values()) >= 1
    assert (await _meeting_row(owner_engine, tenant, meeting)).status == "cancelled"


async def _quiet(stack: GoogleStack, tenant: Tenant, pushed: int) -> None:
    """Waits until Google's pushes were accepted (their jobs queued; a late push of an
    earlier test does not count for this one's) and no calendar notification of the tenant
    is waiting or running."""

    async def accepted() -> bool | None:
        push = stack.fake.push
        return True if len(push.delivered) > pushed and push.in_flight == 0 else None

    await poll(accepted)

    async def idle() -> bool | None:
        async with stack.server.deps.db.unit_of_work(
            Caller(role=Role.SERVICE, tenant_id=tenant.id)
        ) as session:
            busy = await session.scalar(
                text(
                    "SELECT count(*) FROM eventos_pendentes WHERE operacao ="
                    " 'google_calendar_notification' AND status IN ('pending', 'processing')"
                )
            )
        return True if busy == 0 else None

    await poll(idle)


async def test_an_app_in_testing_mode_warns_the_super_admins(
    stack: GoogleStack, make_tenant: MakeTenant
) -> None:
    settings = stack.fake.state.settings
    stack.fake.state.settings = dataclasses.replace(settings, testing_mode=True)
    try:
        await connect(stack, _member(await make_tenant()))
    finally:
        stack.fake.state.settings = settings
    async with stack.server.deps.db.unit_of_work(Caller(role=Role.SUPER_ADMIN)) as session:
        kinds = (
            (
                await session.execute(
                    text("SELECT kind FROM alerts WHERE organizacao_id IS NULL AND kind = :k"),
                    {"k": TESTING_KIND},
                )
            )
            .scalars()
            .all()
        )
    assert kinds


@pytest.mark.usefixtures("on_vendas")
async def test_listing_the_calendar_shows_crm_meetings(
    stack: GoogleStack, connected: tuple[Tenant, Caller], owner_engine: AsyncEngine
) -> None:
    tenant, caller = connected
    meeting = await _meeting(owner_engine, tenant, caller.user_id)  # type: ignore[arg-type]
    created = await _create(stack, caller, meeting, add_google_meet=False)
    listed = await _stub(stack).ListGoogleCalendarEvents(
        pb.ListGoogleCalendarEventsRequest(
            start_time=timestamp(START - dt.timedelta(days=1)),
            end_time=timestamp(START + dt.timedelta(days=1)),
            somente_crm=True,
        ),
        metadata=stack.md(caller),
    )
    mine = [e for e in listed.events if e.event_id == created.event_id]
    assert mine and mine[0].meeting_id == str(meeting)
    assert mine[0].attendees[0].email == "lead@empresa.com"
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await _stub(stack).ListGoogleCalendarEvents(
            pb.ListGoogleCalendarEventsRequest(
                start_time=timestamp(START), end_time=timestamp(START - dt.timedelta(hours=1))
            ),
            metadata=stack.md(caller),
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_grant_revoked_at_google_shows_in_the_status(
    stack: GoogleStack, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    caller = _member(tenant)
    await stack.control("account", {"id": "3003", "email": "ana@gmail.com", "name": "Ana"})
    try:
        await connect(stack, caller)
    finally:
        await stack.control("account", {})
    await stack.control("grants/revoke", {"email": "ana@gmail.com"})
    stub = _stub(stack)
    with pytest.raises(grpc.aio.AioRpcError) as dead:  # 401, one forced refresh: invalid_grant
        await stub.ListGoogleCalendars(pb.ListGoogleCalendarsRequest(), metadata=stack.md(caller))
    assert dead.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    status = (
        await stub.GetGoogleConnection(pb.GetGoogleConnectionRequest(), metadata=stack.md(caller))
    ).connection
    assert status.status == resources_pb2.CONNECTION_STATUS_REVOKED and status.ultimo_erro


@pytest.mark.usefixtures("on_vendas")
async def test_updating_from_the_crm_moves_the_event_and_the_meeting(
    stack: GoogleStack, connected: tuple[Tenant, Caller], owner_engine: AsyncEngine
) -> None:
    tenant, caller = connected
    meeting = await _meeting(owner_engine, tenant, caller.user_id)  # type: ignore[arg-type]
    created = await _create(stack, caller, meeting, add_google_meet=False)
    later = START + dt.timedelta(hours=3)
    updated = await _stub(stack).UpdateGoogleCalendarEvent(
        pb.UpdateGoogleCalendarEventRequest(
            id=created.event_id,
            start=timestamp(later),
            end=timestamp(later + dt.timedelta(minutes=45)),
            summary="Ignorado",  # not in the mask
            update_mask=field_mask_pb2.FieldMask(paths=["start", "end"]),
        ),
        metadata=stack.md(caller),
    )
    assert updated.event.start.ToDatetime(tzinfo=dt.UTC) == later
    stored = await _sandbox_event(stack, VENDAS, created.event_id)
    assert stored["_sendUpdates"] == "all" and stored["summary"] == "Reuniao com Joao"
    row = await _meeting_row(owner_engine, tenant, meeting)
    assert row.inicio == later and row.fim == later + dt.timedelta(minutes=45)
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await _stub(stack).UpdateGoogleCalendarEvent(
            pb.UpdateGoogleCalendarEventRequest(
                id=created.event_id, update_mask=field_mask_pb2.FieldMask(paths=["organizer"])
            ),
            metadata=stack.md(caller),
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_meet_refused_by_google_says_why(
    stack: GoogleStack, make_tenant: MakeTenant, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    caller = _member(tenant)
    await stack.control(
        "account", {"id": "4004", "email": "semmeet@empresa.com", "meet_allowed": False}
    )
    try:
        await connect(stack, caller)
    finally:
        await stack.control("account", {})
    meeting = await _meeting(owner_engine, tenant, caller.user_id)  # type: ignore[arg-type]
    created = await _create(stack, caller, meeting, add_google_meet=True)
    assert created.event_id and created.google_meet_link == ""
    assert created.google_meet_status == "failure" and created.motivo_meet == "MEET_NOT_ALLOWED"
