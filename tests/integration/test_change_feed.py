"""The change feed over real gRPC: a consumer that disconnects resumes with after_sequence and
gets exactly what it missed, in order, then live changes; retention's clear error."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid

import grpc
import httpx
import pytest
from grpc_status import rpc_status
from renove.conexoes.v1 import connections_service_pb2 as cpb
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.auth.caller import Caller, Role
from server.outbox import purge_outbox, record_change
from tests.e2e.gateway_stack import running_sidecar
from tests.support.crm_core import CrmCore
from tests.support.grpc_server import RunningServer
from tests.support.whatsapp_stack import poll


@pytest.fixture
def core(server: RunningServer) -> CrmCore:
    return CrmCore(server)


async def produce(server: RunningServer, tenant: uuid.UUID, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        async with server.deps.db.unit_of_work(Caller(role=Role.SERVICE, tenant_id=tenant)) as s:
            await record_change(s, tenant, "CONTACT_CHANGED", {"contato_id": f"c{i}", "n": i})


async def events(call: grpc.aio.UnaryStreamCall, n: int) -> list[cpb.ConnectionEvent]:
    got: list[cpb.ConnectionEvent] = []
    async with asyncio.timeout(20):
        while len(got) < n:
            message = await call.read()
            assert message is not grpc.aio.EOF
            if message.WhichOneof("kind") == "event":
                got.append(message.event)
    return got


async def test_a_consumer_that_was_away_resumes_with_exactly_what_it_missed(
    core: CrmCore,
) -> None:
    tenant = (await core.sync_new_tenant(sellers=0)).core
    assert tenant.tenant_id is not None
    await produce(core.server, tenant.tenant_id, 3)
    first = core.watch_feed(tenant, 0)
    seen = await events(first, 3)
    assert [e.sequence for e in seen] == [1, 2, 3]
    first.cancel()

    # 50 changes while the consumer is down.
    await produce(core.server, tenant.tenant_id, 50, start=3)
    resumed = core.watch_feed(tenant, seen[-1].sequence)
    snapshot = await resumed.read()
    assert snapshot.WhichOneof("kind") == "snapshot"
    missed = await events(resumed, 50)
    assert [e.sequence for e in missed] == list(range(4, 54))
    assert [e.payload["n"] for e in missed] == list(range(3, 53))
    assert len({e.id for e in missed}) == 50
    assert all(e.kind == cpb.EVENT_KIND_CONTACT_CHANGED for e in missed)

    # Then live: the next change, once.
    await produce(core.server, tenant.tenant_id, 1, start=53)
    (live,) = await events(resumed, 1)
    assert live.sequence == 54
    resumed.cancel()


async def test_changes_recorded_during_the_replay_are_neither_lost_nor_doubled(
    core: CrmCore,
) -> None:
    tenant = (await core.sync_new_tenant(sellers=0)).core
    assert tenant.tenant_id is not None
    await produce(core.server, tenant.tenant_id, 20)
    watch = core.watch_feed(tenant, 0)
    writer = asyncio.create_task(produce(core.server, tenant.tenant_id, 20, start=20))
    got = await events(watch, 40)
    await writer
    watch.cancel()
    assert [e.sequence for e in got] == list(range(1, 41))


async def test_resuming_before_retention_is_a_clear_error(
    core: CrmCore, owner_engine: AsyncEngine
) -> None:
    tenant = (await core.sync_new_tenant(sellers=0)).core
    assert tenant.tenant_id is not None
    await produce(core.server, tenant.tenant_id, 3)
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.tenant_id)}
        )
        await conn.execute(
            text(
                "UPDATE outbox_eventos SET criado_em = now() - interval '30 days'"
                " WHERE organizacao_id = :t AND sequencia <= 2"
            ),
            {"t": tenant.tenant_id},
        )
    await purge_outbox(core.server.deps.db, dt.timedelta(days=7))
    watch = core.watch_feed(tenant, 1)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await watch.read()
    assert error.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    status = rpc_status.from_call(error.value)
    assert status is not None and "SEQUENCE_EXPIRED" in str(status.details[0].value)
    ok = core.watch_feed(tenant, 2)
    assert (await ok.read()).WhichOneof("kind") == "snapshot"
    (third,) = await events(ok, 1)
    assert third.sequence == 3
    ok.cancel()
    # A consumer starting fresh (0) gets the oldest retained change on, not an error.
    fresh = core.watch_feed(tenant, 0)
    assert (await fresh.read()).WhichOneof("kind") == "snapshot"
    (oldest,) = await events(fresh, 1)
    assert oldest.sequence == 3
    fresh.cancel()


async def test_a_purge_racing_the_replay_is_sequence_expired_not_a_gap(
    core: CrmCore, owner_engine: AsyncEngine
) -> None:
    tenant = (await core.sync_new_tenant(sellers=0)).core
    assert tenant.tenant_id is not None
    await produce(core.server, tenant.tenant_id, 4)
    async with owner_engine.connect() as conn:
        purge = await conn.begin()
        # Retention removes 1-3 and holds the table until it commits; the consumer resuming
        # after 1 is let in by the retention check and its replay waits for the purge.
        await conn.execute(text("LOCK TABLE outbox_eventos IN ACCESS EXCLUSIVE MODE"))
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.tenant_id)}
        )
        await conn.execute(
            text(
                "UPDATE outbox_eventos SET criado_em = now() - interval '30 days'"
                " WHERE organizacao_id = :t AND sequencia <= 3"
            ),
            {"t": tenant.tenant_id},
        )
        await conn.execute(text("SELECT app_purge_outbox(interval '7 days')"))
        watch = core.watch_feed(tenant, 1)
        reading = asyncio.ensure_future(watch.read())
        await poll(lambda: _waiting_on_the_lock(owner_engine))
        await purge.commit()
    got: list[int] = []
    with pytest.raises(grpc.aio.AioRpcError) as error:
        message = await reading
        while message is not grpc.aio.EOF:
            if message.WhichOneof("kind") == "event":
                got.append(message.event.sequence)
            message = await asyncio.wait_for(watch.read(), 5)
    assert got == []  # never 4 alone, as if 2 and 3 had not been
    assert error.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    status = rpc_status.from_call(error.value)
    assert status is not None and "SEQUENCE_EXPIRED" in str(status.details[0].value)


async def _waiting_on_the_lock(owner_engine: AsyncEngine) -> bool | None:
    async with owner_engine.connect() as conn:
        waiting = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND query ILIKE '%outbox_eventos%'"
            )
        )
    return True if waiting else None


async def test_members_resume_only_what_they_may_see(core: CrmCore) -> None:
    tenant = await core.sync_new_tenant(sellers=1)
    seller = Caller(role=Role.MEMBER, tenant_id=tenant.id, user_id=tenant.sellers[0])
    async with core.server.deps.db.unit_of_work(tenant.core) as session:
        await record_change(session, tenant.id, "CONTACT_CHANGED", {"n": 1}, user_id=uuid.uuid4())
    async with core.server.deps.db.unit_of_work(tenant.core) as session:
        await record_change(
            session, tenant.id, "CONTACT_CHANGED", {"n": 2}, user_id=tenant.sellers[0]
        )
    watch = core.watch_feed(seller, 0)
    (mine,) = await events(watch, 1)
    assert (mine.sequence, mine.payload["n"]) == (2, 2)
    watch.cancel()


async def test_the_feed_resumes_over_http_too(core: CrmCore) -> None:
    tenant = (await core.sync_new_tenant(sellers=0)).core
    assert tenant.tenant_id is not None
    await produce(core.server, tenant.tenant_id, 3)
    headers = {
        "authorization": f"Bearer {core.server.token(tenant)}",
        "accept": "application/x-ndjson",
    }
    async with (
        running_sidecar(core.server.deps.settings, core.server.channel) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
        http.stream(
            "GET", "/api/v1/conexoes/eventos:watch", params={"after_sequence": 1}, headers=headers
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        messages = []
        async with asyncio.timeout(10):
            while len(messages) < 3:
                line = await anext(lines)
                if line.strip():
                    messages.append(json.loads(line)["result"])
    assert "snapshot" in messages[0]
    assert [int(m["event"]["sequence"]) for m in messages[1:]] == [2, 3]


async def test_a_bad_after_sequence_is_a_400_over_http(core: CrmCore) -> None:
    tenant = (await core.sync_new_tenant(sellers=0)).core
    headers = {"authorization": f"Bearer {core.server.token(tenant)}"}
    async with (
        running_sidecar(core.server.deps.settings, core.server.channel) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        ahead = await http.get(
            "/api/v1/conexoes/eventos:watch", params={"after_sequence": 99}, headers=headers
        )
    assert ahead.status_code == 400
    violations = ahead.json()["details"][-1]["field_violations"]
    assert violations[0]["field"] == "after_sequence"


async def test_a_change_too_large_for_notify_arrives_whole(core: CrmCore) -> None:
    tenant = (await core.sync_new_tenant(sellers=0)).core
    assert tenant.tenant_id is not None
    resumed = core.watch_feed(tenant, 0)
    live = core.connections.WatchEvents(cpb.WatchEventsRequest(), metadata=core.md(tenant))
    for call in (resumed, live):
        assert (await call.read()).WhichOneof("kind") == "snapshot"
    text = "x" * 20_000  # NOTIFY payloads stop at 8000 bytes
    async with core.server.deps.db.unit_of_work(tenant) as session:
        await record_change(session, tenant.tenant_id, "MESSAGE_RECEIVED", {"body": text})
    for call in (resumed, live):
        (event,) = await events(call, 1)
        call.cancel()
        assert event.payload["body"] == text and event.sequence == 1
