"""WhatsApp on the change feed: a seller of a directory tenant connects their number, a
customer writes, the seller replies; the CRM core, resuming from where it was, learns the
connection change, the new contact, the inbound message and the reply with its status."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from renove.conexoes.v1 import connections_service_pb2 as cpb
from renove.conexoes.v1 import whatsapp_service_pb2 as pb

from server.auth.caller import Caller, Role
from tests.conftest import MigratedDatabase
from tests.support.crm_core import CrmCore
from tests.support.databases import isolated_database_fixture, isolated_owner_engine_fixture
from tests.support.whatsapp_stack import Stack, poll, whatsapp_stack

database = isolated_database_fixture()
owner_engine = isolated_owner_engine_fixture()


@pytest.fixture
async def stack(database: MigratedDatabase, tmp_path: Path) -> AsyncIterator[Stack]:
    async with whatsapp_stack(database.owner_url, str(tmp_path)) as running:
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
