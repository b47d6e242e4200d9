"""Custom Audiences end to end: the admin's Meta connection lists ad accounts, creates a
customer-list audience at the Graph sandbox, pipeline events fill it, "sync now" uploads more
than 10,000 contacts in several requests of one Meta session, Meta's size range comes back,
and renaming and deleting reach Meta."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import timestamp_pb2
from renove.conexoes.v1 import audiences_service_pb2 as pb
from renove.conexoes.v1 import audiences_service_pb2_grpc as pb_grpc
from renove.conexoes.v1 import crm_directory_service_pb2 as dpb
from renove.conexoes.v1 import crm_directory_service_pb2_grpc as dpb_grpc
from renove.conexoes.v1 import crm_events_service_pb2 as epb
from renove.conexoes.v1 import crm_events_service_pb2_grpc as epb_grpc
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import PendingEvent
from sandbox.graph.ads import AD_ACCOUNT_ID, NO_TERMS_AD_ACCOUNT_ID
from server.auth.caller import Role
from tests.conftest import MakeCaller, MakeTenant, MigratedDatabase, PgServer
from tests.integration.meta_leads_support import (
    MetaStack,
    isolated_database,
    meta_stack,
    owner_engine_for,
    poll,
)
from tests.unit.test_meta_user_data import KNOWN


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
    async with meta_stack(database.owner_url, str(tmp_path_factory.mktemp("aud"))) as running:
        await running.set_meta_app()
        yield running


class Admin:
    def __init__(self, stack: MetaStack, make_caller: MakeCaller, tenant: Any) -> None:
        self.stack = stack
        self.tenant = tenant
        self.admin = make_caller(tenant, Role.ADMIN)
        self.md = stack.md(self.admin)
        self.service_md = stack.md(make_caller(tenant, Role.SERVICE))
        self.api = pb_grpc.AudiencesServiceStub(stack.server.channel)
        self.events = epb_grpc.CrmEventsServiceStub(stack.server.channel)

    async def create(self, **fields: Any) -> pb.Audience:
        audience = pb.Audience(**{"ad_account_id": AD_ACCOUNT_ID, **fields})
        made = await self.api.CreateAudience(
            pb.CreateAudienceRequest(audience=audience), metadata=self.md
        )
        return made.audience

    async def meta(self, audience_id: str) -> dict[str, Any]:
        got = await self.stack.http.get(f"{self.stack.graph_url}/_control/audiences/{audience_id}")
        result: dict[str, Any] = got.json()
        return result

    async def synced(self, audience: pb.Audience) -> pb.Audience:
        async def done() -> pb.Audience | None:
            async with self.stack.server.deps.db.unit_of_work(self.admin) as session:
                busy = await session.scalar(
                    select(func.count()).where(
                        PendingEvent.destino == audience.id,
                        PendingEvent.status.in_(("pending", "processing")),
                    )
                )
            if busy:
                return None
            got = (
                await self.api.GetAudience(pb.GetAudienceRequest(id=audience.id), metadata=self.md)
            ).audience
            return got if got.HasField("ultimo_sync") else None

        result: pb.Audience = await poll(done, within=60)
        return result


@pytest.fixture
async def admin(stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller) -> Admin:
    who = Admin(stack, make_caller, await make_tenant(members=1))
    await stack.authorize(who.admin)  # the Meta login (with ads_management); no page needed
    return who


async def test_accounts_create_and_event_additions(admin: Admin) -> None:
    accounts = await admin.api.ListAdAccounts(pb.ListAdAccountsRequest(), metadata=admin.md)
    terms = {a.ad_account_id: a.custom_audience_tos_accepted for a in accounts.ad_accounts}
    assert terms == {AD_ACCOUNT_ID: True, NO_TERMS_AD_ACCOUNT_ID: False}

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin.create(
            audience_name="Sem termos",
            ad_account_id=NO_TERMS_AD_ACCOUNT_ID,
            evento_gatilho=pb.AUDIENCE_TRIGGER_MQL,
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin.create(audience_name="Sem gatilho")  # EVENTO needs a trigger
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    audience = await admin.create(
        audience_name="CRM - MQL",
        description="Leads qualificados do CRM",
        evento_gatilho=pb.AUDIENCE_TRIGGER_MQL,
    )
    assert audience.audience_id and audience.tipo_sincronizacao == pb.AUDIENCE_SYNC_TYPE_EVENTO
    at_meta = await admin.meta(audience.audience_id)
    assert at_meta["customer_file_source"] == "USER_PROVIDED_ONLY"
    assert at_meta["description"] == "Leads qualificados do CRM"

    contacts = [str(uuid.uuid4()) for _ in range(3)]
    for i, contato in enumerate(contacts):
        email = KNOWN["em"][0] if i == 0 else f"pessoa{i}@example.com"
        published = await admin.events.PublishPipelineEvent(
            epb.PublishPipelineEventRequest(
                request_id=f"mql-{contato}",
                event_type=epb.PIPELINE_EVENT_TYPE_MQL,
                contato_id=contato,
                contato=epb.ContactData(email=email, primeiro_nome=f"Pessoa {i}"),
            ),
            metadata=admin.service_md,
        )
        assert [j.tipo for j in published.jobs] == ["audience_sync"]
    # A contact created event does not feed an MQL audience.
    other = await admin.events.PublishPipelineEvent(
        epb.PublishPipelineEventRequest(
            request_id=f"lead-{uuid.uuid4()}",
            event_type=epb.PIPELINE_EVENT_TYPE_CONTACT_CREATED,
            contato_id=str(uuid.uuid4()),
            contato=epb.ContactData(email="fora@example.com"),
        ),
        metadata=admin.service_md,
    )
    assert not other.jobs

    done = await admin.synced(audience)
    assert done.total_usuarios == 3 and done.ultimo_sync_sucesso
    assert done.tamanho_insuficiente and not done.HasField("approximate_count_lower_bound")
    assert (await admin.meta(audience.audience_id))["members"] == 3
    members = await admin.api.ListAudienceMembers(
        pb.ListAudienceMembersRequest(id=audience.id), metadata=admin.md
    )
    assert members.total_size == 3 and all(m.sincronizado for m in members.members)
    assert KNOWN["em"][1] in {m.email_hash for m in members.members}
    assert "example.com" not in str(members)  # hashes only, never the e-mail

    # The CRM core deletes one of them: it leaves the audience at Meta.
    deleted_at = timestamp_pb2.Timestamp()
    deleted_at.GetCurrentTime()
    directory = dpb_grpc.CrmDirectoryServiceStub(admin.stack.server.channel)
    await directory.DeleteCrmContact(
        dpb.DeleteCrmContactRequest(id=contacts[1], updated_at=deleted_at),
        metadata=admin.service_md,
    )

    async def removed() -> bool | None:
        return True if (await admin.meta(audience.audience_id))["members"] == 2 else None

    await poll(removed)
    members = await admin.api.ListAudienceMembers(
        pb.ListAudienceMembersRequest(id=audience.id), metadata=admin.md
    )
    assert members.total_size == 2 and contacts[1] not in {m.contato_id for m in members.members}


async def test_manual_sync_of_more_than_10000_contacts(
    admin: Admin, owner_engine: AsyncEngine
) -> None:
    count = 10_050
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(admin.tenant.id)}
        )
        await conn.execute(
            text(
                "INSERT INTO contatos (organizacao_id, nome, email)"
                " SELECT :o, 'Contato ' || g, 'contato' || g || '@example.com'"
                " FROM generate_series(1, :n) AS g"
            ),
            {"o": admin.tenant.id, "n": count},
        )
    audience = await admin.create(
        audience_name="CRM - Todos", tipo_sincronizacao=pb.AUDIENCE_SYNC_TYPE_MANUAL
    )
    sync = await admin.api.SyncAudience(
        pb.SyncAudienceRequest(id=audience.id, full_resync=True, request_id="sync-1"),
        metadata=admin.md,
    )
    assert sync.job_id and sync.membros_a_sincronizar == count
    done = await admin.synced(audience)
    assert done.total_usuarios == count and done.ultimo_sync_sucesso
    assert done.approximate_count_lower_bound == count
    assert done.approximate_count_upper_bound >= count and not done.tamanho_insuficiente
    at_meta = await admin.meta(audience.audience_id)
    assert at_meta["members"] == count and at_meta["uploads"] == 2
    assert list(at_meta["sessions"].values()) == [[1, 2]]


async def test_rename_and_delete_reach_meta(admin: Admin) -> None:
    audience = await admin.create(
        audience_name="CRM - Ganhos", evento_gatilho=pb.AUDIENCE_TRIGGER_WON
    )
    renamed = await admin.api.UpdateAudience(
        pb.UpdateAudienceRequest(
            id=audience.id, audience=pb.Audience(audience_name="CRM - Clientes")
        ),
        metadata=admin.md,
    )
    assert renamed.audience.audience_name == "CRM - Clientes"
    assert (await admin.meta(audience.audience_id))["name"] == "CRM - Clientes"
    await admin.api.DeleteAudience(
        pb.DeleteAudienceRequest(id=audience.id, delete_on_meta=True), metadata=admin.md
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin.api.GetAudience(pb.GetAudienceRequest(id=audience.id), metadata=admin.md)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    async def deleted() -> bool | None:
        return True if (await admin.meta(audience.audience_id))["deleted"] else None

    await poll(deleted)


async def test_create_retried_after_meta_created_it_adopts_instead_of_duplicating(
    admin: Admin,
) -> None:
    name = f"CRM - Retry {uuid.uuid4().hex[:8]}"
    audience = pb.Audience(
        ad_account_id=AD_ACCOUNT_ID,
        audience_name=name,
        description="Criado uma vez",
        evento_gatilho=pb.AUDIENCE_TRIGGER_LEAD,
    )
    request = pb.CreateAudienceRequest(audience=audience, request_id=f"create-{uuid.uuid4()}")
    # Meta creates it; the completion's read of the new audience (a GET of its id) fails.
    await admin.stack.control(
        "faults", {"pattern": r"/\d{10,}$", "method": "GET", "kind": "server_error", "times": 1}
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin.api.CreateAudience(request, metadata=admin.md)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE

    async def at_meta() -> list[dict[str, Any]]:
        got = await admin.stack.http.get(
            f"{admin.stack.graph_url}/_control/audiences", params={"name": name}
        )
        found: list[dict[str, Any]] = got.json()
        return found

    [created] = await at_meta()
    listed = await admin.api.ListAudiences(pb.ListAudiencesRequest(), metadata=admin.md)
    assert name not in {a.audience_name for a in listed.audiences}  # not ready: not shown

    made = (await admin.api.CreateAudience(request, metadata=admin.md)).audience
    assert [a["id"] for a in await at_meta()] == [created["id"]]
    assert made.audience_id == created["id"] and made.audience_name == name
    again = (await admin.api.CreateAudience(request, metadata=admin.md)).audience
    assert again.id == made.id
    listed = await admin.api.ListAudiences(pb.ListAudiencesRequest(), metadata=admin.md)
    assert [a.id for a in listed.audiences if a.audience_name == name] == [made.id]

    # A second create of the same name with another request id is a new audience.
    other = pb.CreateAudienceRequest(audience=audience, request_id=f"create-{uuid.uuid4()}")
    second = (await admin.api.CreateAudience(other, metadata=admin.md)).audience
    assert second.audience_id != made.audience_id and len(await at_meta()) == 2
