"""WhatsApp on the change feed: a seller of a directory tenant connects their number, a
customer writes, the seller replies; the CRM core, resuming from where it was, learns the
connection change, the new contact, the inbound message and the reply with its status. The
same real changes reach the tenant's outbound webhook: through 500, 500, 200, and all 50 of
the messages a customer sent while the core was away."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from renove.conexoes.v1 import connections_service_pb2 as cpb
from renove.conexoes.v1 import outbound_webhooks_service_pb2 as opb
from renove.conexoes.v1 import outbound_webhooks_service_pb2_grpc as opb_grpc
from renove.conexoes.v1 import whatsapp_service_pb2 as pb
from sqlalchemy import func, select

from db.models import OutboxEvent, PendingEvent
from server.auth.caller import Caller, Role
from server.resilience.clock import FakeClock
from tests.conftest import MigratedDatabase
from tests.support.crm_core import CrmCore, DirectoryTenant, replayed_changes
from tests.support.databases import isolated_database_fixture, isolated_owner_engine_fixture
from tests.support.jobs import ahead_clock
from tests.support.webhook_receiver import webhook_receiver
from tests.support.whatsapp_stack import Stack, poll, whatsapp_stack

database = isolated_database_fixture()
owner_engine = isolated_owner_engine_fixture()


@pytest.fixture
def clock() -> FakeClock:
    return ahead_clock()


@pytest.fixture
async def stack(
    database: MigratedDatabase, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Stack]:
    async with whatsapp_stack(
        database.owner_url, str(tmp_path), clock=clock, webhook_allow_private_targets=True
    ) as running:
        yield running


async def drain(call: grpc.aio.UnaryStreamCall, until: int) -> list[cpb.ConnectionEvent]:
    """Events up to and including the first of kind `until` sent with status sent."""
    got: list[cpb.ConnectionEvent] = []
    async with asyncio.timeout(20):
        while True:
            message = await call.read()
            assert message is not grpc.aio.EOF
            if message.WhichOneof("kind") != "event":
                continue
            got.append(message.event)
            event = message.event
            if event.kind == until and event.payload["status"] == "sent":
                return got


async def test_the_core_learns_a_sellers_whatsapp_conversation(stack: Stack) -> None:
    core = CrmCore(stack.server)
    tenant = await core.sync_new_tenant(sellers=1)
    seller = Caller(role=Role.MEMBER, tenant_id=tenant.id, user_id=tenant.sellers[0])
    session_name = await stack.connect(seller, "5511966660009", name="Vendedor")

    # The core was away: it resumes from 0 and follows.
    feed = core.watch_feed(tenant.core, 0)
    assert (await feed.read()).WhichOneof("kind") == "snapshot"
    await stack.control(
        f"sessions/{session_name}/inbound",
        {"from": "5521955550009", "body": "Quero um orcamento", "pushName": "Cliente"},
    )

    async def contact_id() -> str | None:
        found = await stack.stub().ListWhatsAppConversations(
            pb.ListWhatsAppConversationsRequest(), metadata=stack.md(seller)
        )
        return found.conversations[0].contato_id if found.conversations else None

    contato = await poll(contact_id)
    await stack.stub().SendWhatsAppMessage(
        pb.SendWhatsAppMessageRequest(
            request_id=str(uuid.uuid4()), contato_id=contato, text="Claro! Segue."
        ),
        metadata=stack.md(seller),
    )
    events = await drain(feed, cpb.EVENT_KIND_MESSAGE_STATUS)
    feed.cancel()

    sequences = [e.sequence for e in events]
    assert sequences == list(range(1, len(events) + 1))
    connected = [e for e in events if e.kind == cpb.EVENT_KIND_CONNECTION_CHANGED]
    assert connected and connected[-1].payload["status"] == "connected"
    assert connected[-1].payload["connection_type"] == "WHATSAPP"
    contact = next(e for e in events if e.kind == cpb.EVENT_KIND_CONTACT_CHANGED)
    assert contact.payload["contato_id"] == contato and contact.payload["origem"] == "whatsapp"
    assert contact.payload["created"] is True and contact.payload["telefone"] == "+5521955550009"
    inbound = next(e for e in events if e.kind == cpb.EVENT_KIND_MESSAGE_RECEIVED)
    assert inbound.payload["message"]["body"] == "Quero um orcamento"
    assert inbound.usuario_id == str(tenant.sellers[0])
    replies = [e for e in events if e.kind == cpb.EVENT_KIND_MESSAGE_STATUS]
    assert [r.payload["status"] for r in replies][:1] == ["pending"]
    assert replies[-1].payload["status"] == "sent"
    assert len({r.payload["id"] for r in replies}) == 1


async def _register(stack: Stack, tenant: DirectoryTenant, url: str) -> str:
    stub = opb_grpc.OutboundWebhooksServiceStub(stack.server.channel)
    created = await stub.CreateOutboundWebhook(
        opb.CreateOutboundWebhookRequest(
            webhook=opb.OutboundWebhook(url=url, eventos=[cpb.EVENT_KIND_MESSAGE_RECEIVED])
        ),
        metadata=stack.md(tenant.admin),
    )
    return created.secret


async def _delivery(stack: Stack, tenant: DirectoryTenant) -> PendingEvent | None:
    async with stack.server.deps.db.unit_of_work(tenant.core) as session:
        job: PendingEvent | None = await session.scalar(
            select(PendingEvent).where(PendingEvent.tipo == "webhook_saida")
        )
        return job


async def test_a_customers_message_reaches_an_endpoint_answering_500_500_200(
    stack: Stack, clock: FakeClock
) -> None:
    tenant = await CrmCore(stack.server).sync_new_tenant(sellers=1)
    seller = Caller(role=Role.MEMBER, tenant_id=tenant.id, user_id=tenant.sellers[0])
    session_name = await stack.connect(seller, "5511966660019", name="Vendedor")
    async with webhook_receiver([500, 500, 200]) as receiver:
        await _register(stack, tenant, receiver.url)
        await stack.control(
            f"sessions/{session_name}/inbound",
            {"from": "5521955550019", "body": "Tem horario amanha?", "pushName": "Cliente"},
        )
        for attempt in (1, 2):
            await receiver.wait_for(attempt)

            async def waiting(n: int = attempt) -> bool | None:
                job = await _delivery(stack, tenant)
                return True if job and job.status == "pending" and job.tentativas == n else None

            await poll(waiting)
            clock.advance(120)  # past the policy's backoff
        got = await receiver.wait_for(3)

        async def completed() -> bool | None:
            job = await _delivery(stack, tenant)
            return True if job and job.status == "completed" else None

        await poll(completed)
    assert len(got) == 3 and len({r.body for r in got}) == 1
    document = json.loads(got[0].body)
    assert document["kind"] == "MESSAGE_RECEIVED"
    assert document["payload"]["message"]["body"] == "Tem horario amanha?"
    assert [r.headers["x-renove-delivery-attempt"] for r in got] == ["1", "2", "3"]


async def test_fifty_messages_while_the_core_was_away(stack: Stack) -> None:
    core = CrmCore(stack.server)
    tenant = await core.sync_new_tenant(sellers=1)
    seller = Caller(role=Role.MEMBER, tenant_id=tenant.id, user_id=tenant.sellers[0])
    session_name = await stack.connect(seller, "5511966660029", name="Vendedor")
    seen = await replayed_changes(stack.server, tenant.id)
    last_seen = seen[-1].sequence if seen else 0

    async def received() -> int | None:
        async with stack.server.deps.db.unit_of_work(tenant.core) as session:
            n = await session.scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .where(OutboxEvent.tipo == "MESSAGE_RECEIVED")
            )
        return n if n == 50 else None

    async with webhook_receiver([200]) as receiver:
        await _register(stack, tenant, receiver.url)
        # The core is away while the customer writes 50 times.
        for i in range(50):
            await stack.control(
                f"sessions/{session_name}/inbound",
                {"from": "5521955550029", "body": f"mensagem {i}", "pushName": "Cliente"},
            )
        await poll(received, within=30)
        delivered = await receiver.wait_for(50, within=30)
    missed = await replayed_changes(stack.server, tenant.id, after=last_seen)
    assert [e.sequence for e in missed] == list(range(last_seen + 1, last_seen + len(missed) + 1))
    messages = [e for e in missed if e.kind == cpb.EVENT_KIND_MESSAGE_RECEIVED]
    bodies = {e.payload["message"]["body"] for e in messages}
    assert len(messages) == 50 and bodies == {f"mensagem {i}" for i in range(50)}
    # The endpoint got each of them once, one at a time in feed order.
    arrived = [int(r.headers["x-renove-sequence"]) for r in delivered]
    assert arrived == sorted(arrived) and len(set(arrived)) == 50
    by_id = {r.headers["x-renove-event-id"]: r for r in delivered}
    assert set(by_id) == {e.id for e in messages}
    assert {int(r.headers["x-renove-sequence"]) for r in by_id.values()} == {
        e.sequence for e in messages
    }
