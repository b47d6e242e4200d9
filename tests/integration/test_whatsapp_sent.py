"""A WhatsApp send's result in one statement: counters, message, change feed, outbound
deliveries and the live announcement, exactly as the separate writes made them."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

from sqlalchemy import text

from server.events import CHANNEL, Event
from server.observability.context import CallInfo, bound
from server.resilience.budget import tenant_service
from server.whatsapp.sent import record_sent
from tests.support.jobs import rows


async def _seed(owner_engine: Any, tenant: Any) -> tuple[uuid.UUID, uuid.UUID]:
    session_id, message_id = uuid.uuid4(), uuid.uuid4()
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
        )
        await conn.execute(
            text(
                "INSERT INTO sessoes_whatsapp (id, organizacao_id, usuario_id, session_name,"
                " status, total_mensagens_enviadas) VALUES (:id, :o, :u, :n, 'connected', 4)"
            ),
            {"id": session_id, "o": tenant.id, "u": tenant.member_id, "n": f"wpp-{session_id}"},
        )
        await conn.execute(
            text(
                "INSERT INTO conversas (id, organizacao_id, canal, usuario_id, direcao, conteudo,"
                " status) VALUES (:id, :o, 'whatsapp', :u, 'outbound', 'Oi', 'pending')"
            ),
            {"id": message_id, "o": tenant.id, "u": tenant.member_id},
        )
        await conn.execute(
            text(
                "INSERT INTO webhooks_saida (organizacao_id, url, eventos, segredo_encrypted)"
                " VALUES (:o, 'https://crm.example.com/hook', ARRAY['MESSAGE_STATUS'], 'x')"
            ),
            {"o": tenant.id},
        )
    return session_id, message_id


async def test_the_send_result_counts_records_delivers_and_announces(db, make_tenant, owner_engine):
    tenant = await make_tenant()
    session_id, message_id = await _seed(owner_engine, tenant)
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await db.raw_connection()
    await listener.add_listener(CHANNEL, lambda *args: heard.put_nowait(args[3]))
    at = dt.datetime.now(dt.UTC)
    try:
        with bound(CallInfo("req-send-1", operation="whatsapp_send")):
            async with db.plain_unit_of_work(tenant_service(tenant.id)) as pg:
                sequence = await record_sent(
                    pg,
                    message_id=message_id,
                    session_id=session_id,
                    external_id="wa-1",
                    ack=1,
                    at=at,
                )
        event = Event.decode(await asyncio.wait_for(heard.get(), 5))
    finally:
        await listener.close()

    assert sequence == 1
    assert (event.kind, event.tenant_id, event.user_id, event.sequence) == (
        "MESSAGE_STATUS",
        tenant.id,
        tenant.member_id,
        1,
    )
    assert event.data == {"canal": "whatsapp", "id": str(message_id), "status": "sent"}
    (message,) = await rows(owner_engine, "SELECT * FROM conversas WHERE id = :id", id=message_id)
    assert (message.status, message.external_id, message.ack, message.enviado_em) == (
        "sent",
        "wa-1",
        1,
        at,
    )
    (session,) = await rows(
        owner_engine, "SELECT * FROM sessoes_whatsapp WHERE id = :id", id=session_id
    )
    assert (session.total_mensagens_enviadas, session.ultima_mensagem_em) == (5, at)
    (change,) = await rows(
        owner_engine,
        "SELECT * FROM outbox_eventos WHERE organizacao_id = :t",
        t=tenant.id,
    )
    assert (str(change.id), change.sequencia, change.tipo, change.payload) == (
        event.id,
        1,
        "MESSAGE_STATUS",
        event.data,
    )
    assert change.criado_em == event.occurred_at
    (delivery,) = await rows(
        owner_engine,
        "SELECT * FROM eventos_pendentes WHERE organizacao_id = :t AND tipo = 'webhook_saida'",
        t=tenant.id,
    )
    assert (delivery.payload["event_id"], delivery.payload["sequence"]) == (event.id, 1)
    assert delivery.request_id == "req-send-1"  # the recording job's request id


async def test_a_gone_session_leaves_everything_unchanged(db, make_tenant, owner_engine):
    tenant = await make_tenant()
    _, message_id = await _seed(owner_engine, tenant)
    async with db.plain_unit_of_work(tenant_service(tenant.id)) as pg:
        sequence = await record_sent(
            pg,
            message_id=message_id,
            session_id=uuid.uuid4(),
            external_id="wa-2",
            ack=None,
            at=dt.datetime.now(dt.UTC),
        )
    assert sequence is None
    (message,) = await rows(
        owner_engine, "SELECT status, external_id FROM conversas WHERE id = :id", id=message_id
    )
    assert tuple(message) == ("pending", None)
    changes = await rows(
        owner_engine, "SELECT id FROM outbox_eventos WHERE organizacao_id = :t", t=tenant.id
    )
    assert changes == []
