"""What becomes of an Instagram DM send once the queue is involved: a failed send retried from
the dead-letter queue goes out, a send whose worker was lost on its last attempt is failed on
the change feed, and the sent counter counts a send exactly once when its echo comes first.

One stack (sandbox, sidecar, server with its worker) serves the module; each test has its
own tenant and its own sandbox account."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from renove.conexoes.v1 import connections_service_pb2 as cpb
from renove.conexoes.v1 import instagram_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import Alert, InstagramConnection, Message
from server.auth.caller import Caller, Role
from server.instagram.connection import access_token
from server.instagram.views import CANAL
from tests.conftest import MakeCaller, MakeTenant, MigratedDatabase, PgServer
from tests.e2e.test_instagram_e2e import _connect, _conversation_of, _send, _status_of
from tests.integration.meta_leads_support import isolated_database, owner_engine_for
from tests.support.email_stack import job_done
from tests.support.instagram_stack import InstagramStack, instagram_stack

TWO_DAYS_S = 2 * 86400


@pytest.fixture(scope="module")
async def database(pg: PgServer) -> AsyncIterator[MigratedDatabase]:
    async with isolated_database(pg) as fresh:
        yield fresh


@pytest.fixture(scope="module")
async def owner_engine(database: MigratedDatabase) -> AsyncIterator[AsyncEngine]:
    async with owner_engine_for(database) as engine:
        yield engine


@pytest.fixture(scope="module")
async def stack(
    database: MigratedDatabase, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[InstagramStack]:
    data = str(tmp_path_factory.mktemp("instagram-outcomes"))
    async with instagram_stack(database.owner_url, data) as running:
        await running.set_instagram_app()
        yield running


async def _status_changes(owner_engine: AsyncEngine, tenant: uuid.UUID, our_id: str) -> list[str]:
    async with owner_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT payload->>'status' AS status FROM outbox_eventos"
                    " WHERE organizacao_id = :t AND tipo = 'MESSAGE_STATUS'"
                    " AND payload->>'id' = :id ORDER BY sequencia"
                ),
                {"t": tenant, "id": our_id},
            )
        ).all()
    return [r.status for r in rows]


async def _sent_counter(stack: InstagramStack, caller: Caller) -> int:
    async with stack.server.deps.db.unit_of_work(caller) as session:
        row = await session.scalar(select(InstagramConnection))
    assert row is not None
    return row.total_mensagens_enviadas or 0


async def _api_sends(stack: InstagramStack, content: str) -> list[object]:
    answer = await stack.http.get(f"{stack.instagram_url}/_control/sent")
    answer.raise_for_status()
    return [s for s in answer.json() if content in str(s)]


async def test_a_failed_dm_retried_from_the_dead_letter_queue_is_sent(
    stack: InstagramStack,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    owner_engine: AsyncEngine,
) -> None:
    tenant = await make_tenant(members=0)
    admin = make_caller(tenant, Role.ADMIN)
    account = await _connect(stack, admin, "loja_repete")
    dm = await stack.dm(account_id=account, text="Oi", timestamp_ms=int(time.time() * 1000))
    conversation = await _conversation_of(stack, admin, dm["sender_id"])
    # Instagram's clock says the window closed; it refuses the send, which fails for good.
    await stack.control("clock", {"advance_seconds": TWO_DAYS_S})
    try:
        sent = await _send(stack, admin, dm["sender_id"], "Segue o catalogo")
        await _status_of(
            stack, admin, conversation.id, sent.id, resources_pb2.MESSAGE_STATUS_FAILED
        )
        assert (await job_done(owner_engine, tenant.id, sent.job_id)).status == "failed"
    finally:
        await stack.control("clock", {"advance_seconds": -TWO_DAYS_S})

    await stack.connections.RetryFailedEvent(
        cpb.RetryFailedEventRequest(id=sent.job_id, reset_tentativas=True),
        metadata=stack.md(admin),
    )
    went = await _status_of(
        stack, admin, conversation.id, sent.id, resources_pb2.MESSAGE_STATUS_SENT
    )
    assert went.message_id
    assert (await job_done(owner_engine, tenant.id, sent.job_id)).status == "completed"
    assert await _sent_counter(stack, admin) == 1
    assert await _status_changes(owner_engine, tenant.id, sent.id) == ["pending", "failed", "sent"]


async def test_a_dm_whose_worker_was_lost_on_its_last_attempt_is_failed(
    stack: InstagramStack,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    owner_engine: AsyncEngine,
) -> None:
    tenant = await make_tenant(members=0)
    admin = make_caller(tenant, Role.ADMIN)
    account = await _connect(stack, admin, "loja_perdida")
    dm = await stack.dm(account_id=account, text="Oi", timestamp_ms=int(time.time() * 1000))
    conversation = await _conversation_of(stack, admin, dm["sender_id"])
    worker = stack.server.deps.worker
    await worker.stop()
    try:
        sent = await _send(stack, admin, dm["sender_id"], "Nunca chega")
        # Every attempt spent by workers that died mid-attempt (each reclaim counts one).
        async with owner_engine.begin() as conn:
            await conn.execute(
                text("UPDATE eventos_pendentes SET tentativas = max_tentativas WHERE id = :id"),
                {"id": sent.job_id},
            )
    finally:
        await worker.start()
    failed = await _status_of(
        stack, admin, conversation.id, sent.id, resources_pb2.MESSAGE_STATUS_FAILED
    )
    assert "no attempts left" in failed.erro
    assert (await job_done(owner_engine, tenant.id, sent.job_id)).status == "failed"
    assert await _status_changes(owner_engine, tenant.id, sent.id) == ["pending", "failed"]
    assert not await _api_sends(stack, "Nunca chega")


async def test_a_send_whose_echo_comes_first_is_counted_once(
    stack: InstagramStack,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    owner_engine: AsyncEngine,
) -> None:
    tenant = await make_tenant(members=0)
    admin = make_caller(tenant, Role.ADMIN)
    account = await _connect(stack, admin, "loja_eco")
    dm = await stack.dm(account_id=account, text="Oi", timestamp_ms=int(time.time() * 1000))
    conversation = await _conversation_of(stack, admin, dm["sender_id"])
    worker = stack.server.deps.worker
    await worker.stop()
    try:
        sent = await _send(stack, admin, dm["sender_id"], "Combinado!")
        # The send's answer is late: its job waits while the echo of that DM arrives.
        async with owner_engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE eventos_pendentes SET proxima_tentativa = now() + interval '1 hour'"
                    " WHERE id = :id"
                ),
                {"id": sent.job_id},
            )
        await stack.control(
            "app-message",
            {"account_id": account, "recipient_id": dm["sender_id"], "text": "Combinado!"},
        )
        await stack.drain()
    finally:
        await worker.start()
    went = await _status_of(
        stack, admin, conversation.id, sent.id, resources_pb2.MESSAGE_STATUS_SENT
    )
    assert went.message_id
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("UPDATE eventos_pendentes SET proxima_tentativa = now() WHERE id = :id"),
            {"id": sent.job_id},
        )
    assert (await job_done(owner_engine, tenant.id, sent.job_id)).status == "completed"
    async with stack.server.deps.db.unit_of_work(admin) as session:
        outbound = (
            await session.scalars(
                select(Message).where(Message.canal == CANAL, Message.direcao == "outbound")
            )
        ).all()
    assert [m.id for m in outbound] == [uuid.UUID(sent.id)]
    assert await _sent_counter(stack, admin) == 1


async def test_a_revoked_token_on_the_send_path_marks_the_connection_and_alerts(
    stack: InstagramStack,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    owner_engine: AsyncEngine,
) -> None:
    tenant = await make_tenant(members=0)
    admin = make_caller(tenant, Role.ADMIN)
    account = await _connect(stack, admin, "loja_revoga")
    # The stored token is encrypted: the row never holds what Instagram accepts.
    async with stack.server.deps.db.unit_of_work(admin) as session:
        row = await session.scalar(select(InstagramConnection))
    assert row is not None
    token = access_token(stack.server.deps, row)
    assert token and token not in row.access_token_encrypted
    me = await stack.http.get(f"{stack.instagram_url}/v23.0/me", params={"access_token": token})
    assert me.status_code == 200, me.text

    dm = await stack.dm(account_id=account, text="Oi", timestamp_ms=int(time.time() * 1000))
    conversation = await _conversation_of(stack, admin, dm["sender_id"])
    await stack.control("tokens/revoke", {"account_id": account})
    sent = await _send(stack, admin, dm["sender_id"], "Ainda ai?")
    failed = await _status_of(
        stack, admin, conversation.id, sent.id, resources_pb2.MESSAGE_STATUS_FAILED
    )
    assert "revoked" in failed.erro
    got = await stack.stub.GetInstagramConnection(
        pb.GetInstagramConnectionRequest(), metadata=stack.md(admin)
    )
    assert got.connection.status == resources_pb2.CONNECTION_STATUS_REVOKED
    assert "190" in got.connection.ultimo_erro
    async with stack.server.deps.db.unit_of_work(admin) as session:
        alerts = list(
            await session.scalars(select(Alert).where(Alert.kind == "instagram_token_revoked"))
        )
    assert alerts and all(a.organizacao_id == tenant.id for a in alerts)
    assert not await _api_sends(stack, "Ainda ai?")


async def _waiting_on_a_lock(owner_engine: AsyncEngine) -> bool:
    async with owner_engine.connect() as conn:
        waiting = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND application_name LIKE 'renove-conexoes%'"
            )
        )
    return bool(waiting)


async def test_a_send_result_and_its_echo_together_do_not_deadlock(
    stack: InstagramStack,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    owner_engine: AsyncEngine,
) -> None:
    """The echo's processing locks the connection, then the message it adopts; the send job,
    writing its result at the same moment, must take them in that order too."""
    tenant = await make_tenant(members=0)
    admin = make_caller(tenant, Role.ADMIN)
    account = await _connect(stack, admin, "loja_trava")
    dm = await stack.dm(account_id=account, text="Oi", timestamp_ms=int(time.time() * 1000))
    await _conversation_of(stack, admin, dm["sender_id"])
    async with owner_engine.connect() as echo:  # plays the echo's transaction
        await echo.execute(text("BEGIN"))
        await echo.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
        )
        await echo.execute(
            text("SELECT id FROM conexoes_instagram WHERE organizacao_id = :t FOR UPDATE"),
            {"t": tenant.id},
        )
        sent = await _send(stack, admin, dm["sender_id"], "Ja te respondo")
        async with asyncio.timeout(30):  # the job came back from Instagram and waits on us
            while True:
                if await _waiting_on_a_lock(owner_engine):
                    break
                await asyncio.sleep(0.02)
        adopted = await echo.scalar(
            text("SELECT id FROM conversas WHERE id = :id FOR UPDATE"), {"id": sent.id}
        )
        assert str(adopted) == sent.id  # the message's row was free: no deadlock
        await echo.execute(text("COMMIT"))
    assert (await job_done(owner_engine, tenant.id, sent.job_id)).status == "completed"
    assert await _sent_counter(stack, admin) == 1
