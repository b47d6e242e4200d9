"""Lead Ads end to end: super admin sets the Meta App -> admin gets the auth URL -> the
sandbox's Facebook Login approves -> the sidecar's callback stores the connection -> page
selected -> form mapped -> the sandbox submits a lead, its signed webhook reaches the sidecar
-> a contact and an opportunity exist in the right stage, and the owner was told on
Connections.WatchEvents."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from renove.conexoes.v1 import connections_service_pb2 as cpb
from renove.conexoes.v1 import connections_service_pb2_grpc as cpb_grpc
from renove.conexoes.v1 import meta_leads_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import Contact, MetaLeadReceived, Opportunity, PendingEvent
from server.auth.caller import Role
from tests.conftest import MakeCaller, MakeTenant, MigratedDatabase, PgServer
from tests.integration.meta_leads_support import (
    FRONTEND,
    MetaStack,
    isolated_database,
    make_pipeline,
    meta_stack,
    owner_engine_for,
    poll,
)


@pytest.fixture(scope="module")
async def database(pg: PgServer) -> AsyncIterator[MigratedDatabase]:
    async with isolated_database(pg) as fresh:
        yield fresh


@pytest.fixture(scope="module")
async def owner_engine(database: MigratedDatabase) -> AsyncIterator[AsyncEngine]:
    async with owner_engine_for(database) as engine:
        yield engine


@pytest.fixture
async def stack(database: MigratedDatabase, tmp_path: Path) -> AsyncIterator[MetaStack]:
    async with meta_stack(database.owner_url, str(tmp_path)) as running:
        yield running


async def test_lead_becomes_contact_and_opportunity(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine
) -> None:
    tenant = await make_tenant(members=1)
    admin = make_caller(tenant, Role.ADMIN)
    funil, novos, _ = await make_pipeline(owner_engine, tenant.id)
    await stack.set_meta_app()

    landed = await stack.authorize(admin)
    assert str(landed).startswith(FRONTEND)
    assert parse_qs(urlsplit(str(landed)).query)["status"] == ["ok"]
    status = await stack.stub.GetMetaConnection(
        pb.GetMetaConnectionRequest(), metadata=stack.md(admin)
    )
    assert status.connection.status == resources_pb2.CONNECTION_STATUS_ACTIVE
    assert status.connection.meta_user_name == "Renove Marketing"
    assert "leads_retrieval" in status.connection.scopes

    pages = await stack.stub.ListMetaPages(pb.ListMetaPagesRequest(), metadata=stack.md(admin))
    assert stack.page_id in [p.page_id for p in pages.pages]
    await stack.stub.SelectMetaPage(
        pb.SelectMetaPageRequest(page_id=stack.page_id), metadata=stack.md(admin)
    )
    forms = await stack.stub.ListMetaLeadForms(
        pb.ListMetaLeadFormsRequest(page_id=stack.page_id), metadata=stack.md(admin)
    )
    assert [q.key for q in forms.forms[0].questions][:2] == ["full_name", "email"]
    mapping = await stack.map_form(admin, funil, novos, owner=tenant.member_id)
    assert mapping.etapa_destino_nome == "Novos Leads"

    # The owner (a member) watches Connections.WatchEvents while the lead arrives.
    member = make_caller(tenant, Role.MEMBER)
    watch = cpb_grpc.ConnectionsServiceStub(stack.server.channel).WatchEvents(
        cpb.WatchEventsRequest(kinds=[cpb.EVENT_KIND_LEAD_RECEIVED]), metadata=stack.md(member)
    )
    first = await watch.read()
    assert first.WhichOneof("kind") == "snapshot"
    leadgen_id = await stack.submit(
        {
            "full_name": "Joana Lima",
            "email": "Joana@Example.com",
            "phone_number": "(11) 98765-4321",
            "company_name": "Acme",
            "qual_o_seu_orcamento": "50k",
        }
    )
    deliveries = await stack.drain()
    assert deliveries[-1]["attempts"][-1]["status"] == 200
    async with asyncio.timeout(15):
        while (message := await watch.read()).WhichOneof("kind") != "event":
            pass
    watch.cancel()
    told = message.event
    assert told.kind == cpb.EVENT_KIND_LEAD_RECEIVED
    assert told.usuario_id == str(tenant.member_id)
    assert told.connection_type == resources_pb2.CONNECTION_TYPE_META_LEAD_ADS
    async with stack.server.deps.db.unit_of_work(admin) as session:
        contact = await session.scalar(select(Contact).where(Contact.email == "joana@example.com"))
        assert contact is not None
        assert (contact.nome, contact.telefone, contact.empresa) == (
            "Joana Lima",
            "+5511987654321",
            "Acme",
        )
        assert contact.campos_customizados == {"orcamento": "50k"}
        assert set(contact.tags) == {"lead-ads", "facebook"}
        opp = await session.scalar(select(Opportunity).where(Opportunity.contato_id == contact.id))
        assert opp is not None and (opp.funil_id, opp.etapa_id) == (funil, novos)
        assert opp.owner_id == tenant.member_id
        ledger = await session.scalar(
            select(MetaLeadReceived).where(MetaLeadReceived.leadgen_id == leadgen_id)
        )
        assert ledger is not None and ledger.status == "processado"
        capi = await session.scalar(
            select(PendingEvent).where(PendingEvent.idempotency_key == f"capi:lead:{leadgen_id}")
        )
        assert capi is None  # no Conversions API configured: nothing queued for it
    got = await stack.stub.GetLeadFormMapping(
        pb.GetLeadFormMappingRequest(id=mapping.id), metadata=stack.md(admin)
    )
    assert got.mapping.total_leads_recebidos == 1
    assert got.mapping.HasField("ultimo_lead_recebido")

    # A duplicate webhook changes nothing.
    await stack.control(f"leads/{leadgen_id}/webhook")
    await stack.drain()

    async def one_contact() -> bool | None:
        async with stack.server.deps.db.unit_of_work(admin) as session:
            rows = list(
                await session.scalars(select(Contact).where(Contact.email == "joana@example.com"))
            )
        return True if len(rows) == 1 else None

    await poll(one_contact)
