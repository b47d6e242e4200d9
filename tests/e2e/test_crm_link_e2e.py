"""The CRM link end to end: a tenant the CRM core created only through the directory (no
seed, no token-made users) gets its pipelines, maps a Lead Ads form onto them and a custom
field of the core, and a lead from the Graph sandbox (signed webhook -> sidecar -> worker)
comes back to the core on the change feed as a contact and an opportunity, owned by the
sellers the core put in lead distribution, in turn; the core's outbound webhook gets them
too, signed."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from renove.conexoes.v1 import connections_service_pb2 as cpb
from renove.conexoes.v1 import crm_directory_service_pb2 as dpb
from renove.conexoes.v1 import outbound_webhooks_service_pb2 as wpb
from renove.conexoes.v1 import outbound_webhooks_service_pb2_grpc as wpb_grpc

from tests.conftest import MigratedDatabase, PgServer
from tests.integration.meta_leads_support import MetaStack, isolated_database, meta_stack
from tests.support.crm_core import CrmCore
from tests.support.webhook_receiver import webhook_receiver

FIELDS = {
    "full_name": "nome",
    "email": "email",
    "phone_number": "telefone",
    "qual_o_seu_orcamento": "custom:orcamento",
}


@pytest.fixture(scope="module")
async def database(pg: PgServer) -> AsyncIterator[MigratedDatabase]:
    async with isolated_database(pg) as fresh:
        yield fresh


@pytest.fixture
async def stack(database: MigratedDatabase, tmp_path: Path) -> AsyncIterator[MetaStack]:
    async with meta_stack(
        database.owner_url, str(tmp_path), webhook_allow_private_targets=True
    ) as running:
        yield running


async def next_events(call: grpc.aio.UnaryStreamCall, n: int) -> list[cpb.ConnectionEvent]:
    got: list[cpb.ConnectionEvent] = []
    async with asyncio.timeout(20):
        while len(got) < n:
            message = await call.read()
            assert message is not grpc.aio.EOF
            if message.WhichOneof("kind") == "event":
                got.append(message.event)
    return got


async def test_a_directory_tenant_maps_a_form_and_its_leads_reach_the_core(
    stack: MetaStack,
) -> None:
    core = CrmCore(stack.server)
    tenant = await core.sync_new_tenant(sellers=2, custom_fields=[("orcamento", "Orcamento")])
    admin = tenant.admin

    # The mapping screen's dropdowns come from the directory.
    pipelines = await core.directory.ListCrmPipelines(
        dpb.ListCrmPipelinesRequest(), metadata=core.md(admin)
    )
    funil = pipelines.pipelines[0]
    fields = await core.directory.ListCrmFields(dpb.ListCrmFieldsRequest(), metadata=core.md(admin))
    assert "custom:orcamento" in [f.target for f in fields.fields]

    await stack.set_meta_app()
    await stack.connect(admin)
    # A custom field the core never defined is refused once the directory defines some.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.map_form(
            admin,
            uuid.UUID(funil.id),
            uuid.UUID(funil.etapas[0].id),
            fields={**FIELDS, "company_name": "custom:nao_existe"},
        )
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    mapping = await stack.map_form(
        admin, uuid.UUID(funil.id), uuid.UUID(funil.etapas[0].id), fields=FIELDS
    )
    assert mapping.etapa_destino_nome == "Novos Leads"

    async with webhook_receiver([200]) as receiver:
        hooks = wpb_grpc.OutboundWebhooksServiceStub(stack.server.channel)
        endpoint = await hooks.CreateOutboundWebhook(
            wpb.CreateOutboundWebhookRequest(
                webhook=wpb.OutboundWebhook(
                    url=receiver.url, eventos=[cpb.EVENT_KIND_OPPORTUNITY_CREATED]
                )
            ),
            metadata=core.md(admin),
        )
        feed = core.watch_feed(
            tenant.core,
            0,
            kinds=[cpb.EVENT_KIND_CONTACT_CHANGED, cpb.EVENT_KIND_OPPORTUNITY_CREATED],
        )
        assert (await feed.read()).WhichOneof("kind") == "snapshot"
        for i in range(2):
            await stack.submit(
                {
                    "full_name": f"Lead {i}",
                    "email": f"lead{i}@example.com",
                    "phone_number": f"(11) 98765-432{i}",
                    "qual_o_seu_orcamento": "50k",
                }
            )
        await stack.drain()
        changes = await next_events(feed, 4)
        feed.cancel()
        delivered = await receiver.wait_for(2)

    kinds = [e.kind for e in changes]
    assert kinds == [cpb.EVENT_KIND_CONTACT_CHANGED, cpb.EVENT_KIND_OPPORTUNITY_CREATED] * 2
    assert [e.sequence for e in changes] == sorted(e.sequence for e in changes)
    contacts = [e for e in changes if e.kind == cpb.EVENT_KIND_CONTACT_CHANGED]
    opportunities = [e for e in changes if e.kind == cpb.EVENT_KIND_OPPORTUNITY_CREATED]
    assert all(c.payload["created"] and c.payload["origem"] == "meta_lead_ads" for c in contacts)
    for contact, opportunity in zip(contacts, opportunities, strict=True):
        assert opportunity.payload["contato_id"] == contact.payload["contato_id"]
        assert opportunity.payload["funil_id"] == funil.id
        assert opportunity.payload["etapa_id"] == funil.etapas[0].id
    # Round-robin over the sellers the core put in distribution (the admin is not one).
    owners = [o.payload["owner_id"] for o in opportunities]
    assert sorted(owners) == sorted(str(s) for s in tenant.sellers)
    # The outbound webhook got the two opportunities, signed, with the feed's ids.
    bodies = [json.loads(r.body) for r in delivered]
    assert sorted(b["id"] for b in bodies) == sorted(o.id for o in opportunities)
    for received in delivered:
        expected = hmac.new(endpoint.secret.encode(), received.body, hashlib.sha256).hexdigest()
        assert received.headers["x-renove-signature"] == f"sha256={expected}"
