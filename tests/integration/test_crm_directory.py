"""CrmDirectoryService over real gRPC: a tenant created only through the directory, newest
write wins, batches are all or nothing, the frontend's dropdowns."""

from __future__ import annotations

import uuid

import grpc
import pytest
from grpc_status import rpc_status
from renove.conexoes.v1 import crm_directory_service_pb2 as pb
from sqlalchemy import func, select

from db.models import (
    Contact,
    CustomAudience,
    CustomAudienceMember,
    PendingEvent,
    Pipeline,
    PipelineStage,
    User,
)
from db.uow import Database
from server.auth.caller import Caller, Role
from server.resilience.operations import AUDIENCE_REMOVE
from server.seed import seed_demo
from tests.support.crm_core import CrmCore, stamp
from tests.support.grpc_server import RunningServer


@pytest.fixture
def core(server: RunningServer) -> CrmCore:
    return CrmCore(server)


def violations(error: grpc.aio.AioRpcError) -> set[str]:
    from google.rpc import error_details_pb2

    status = rpc_status.from_call(error)
    assert status is not None
    found: set[str] = set()
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found |= {v.field for v in bad.field_violations}
    return found


async def test_a_tenant_created_only_through_the_directory_gets_its_dropdowns(
    core: CrmCore,
) -> None:
    tenant = await core.sync_new_tenant(sellers=2, custom_fields=[("orcamento", "Orcamento")])
    # Its admin (a token naming the directory's ids) reads the mapping screen's dropdowns.
    listed = await core.directory.ListCrmPipelines(
        pb.ListCrmPipelinesRequest(), metadata=core.md(tenant.admin)
    )
    assert [p.id for p in listed.pipelines] == [str(tenant.funil_id)]
    stages = listed.pipelines[0].etapas
    assert [(s.id, s.nome, s.ordem) for s in stages] == [
        (str(tenant.etapa_ids[0]), "Novos Leads", 1),
        (str(tenant.etapa_ids[1]), "MQL", 2),
        (str(tenant.etapa_ids[2]), "Proposta", 3),
    ]
    fields = await core.directory.ListCrmFields(
        pb.ListCrmFieldsRequest(), metadata=core.md(tenant.admin)
    )
    targets = [(f.target, f.custom) for f in fields.fields]
    assert targets[:3] == [("nome", False), ("email", False), ("telefone", False)]
    assert ("custom:orcamento", True) in targets
    async with core.server.deps.db.unit_of_work(tenant.admin) as session:
        sellers = list(
            await session.scalars(
                select(User.id).where(User.participa_distribuicao.is_(True)).order_by(User.nome)
            )
        )
    assert sellers == list(tenant.sellers)


async def test_out_of_order_updates_keep_the_newest(core: CrmCore) -> None:
    tenant = await core.sync_new_tenant(sellers=1)
    md = core.md(tenant.core)
    seller = str(tenant.sellers[0])
    newer = pb.CrmUser(id=seller, nome="Newest name", updated_at=stamp(10))
    older = pb.CrmUser(id=seller, nome="Older name", updated_at=stamp(5))
    first = await core.directory.UpsertCrmUser(pb.UpsertCrmUserRequest(user=newer), metadata=md)
    late = await core.directory.UpsertCrmUser(pb.UpsertCrmUserRequest(user=older), metadata=md)
    assert first.result.applied and not late.result.applied
    # A pipeline renamed twice, the older rename arriving last, with its stages reordered.
    new_order = pb.CrmPipeline(
        id=str(tenant.funil_id),
        nome="Vendas 2027",
        etapas=[pb.CrmStage(id=str(tenant.etapa_ids[1]), nome="MQL")],
        updated_at=stamp(20),
    )
    stale = pb.CrmPipeline(id=str(tenant.funil_id), nome="Vendas (old)", updated_at=stamp(15))
    await core.directory.UpsertCrmPipeline(
        pb.UpsertCrmPipelineRequest(pipeline=new_order), metadata=md
    )
    stale_result = await core.directory.UpsertCrmPipeline(
        pb.UpsertCrmPipelineRequest(pipeline=stale), metadata=md
    )
    assert not stale_result.result.applied
    # A delete wins over an older upsert that arrives after it.
    contact_id = str(uuid.uuid4())
    await core.directory.DeleteCrmContact(
        pb.DeleteCrmContactRequest(id=contact_id, updated_at=stamp(30)), metadata=md
    )
    revived = await core.directory.UpsertCrmContact(
        pb.UpsertCrmContactRequest(
            contact=pb.CrmContact(id=contact_id, nome="Ghost", updated_at=stamp(29))
        ),
        metadata=md,
    )
    assert not revived.result.applied
    async with core.server.deps.db.unit_of_work(tenant.admin) as session:
        user = await session.get(User, tenant.sellers[0])
        assert user is not None and user.nome == "Newest name"
        pipeline = await session.get(Pipeline, tenant.funil_id)
        assert pipeline is not None and pipeline.nome == "Vendas 2027"
        live = list(
            await session.scalars(
                select(PipelineStage.nome).where(
                    PipelineStage.funil_id == tenant.funil_id, PipelineStage.deletado_em.is_(None)
                )
            )
        )
        assert live == ["MQL"]


async def test_a_bad_batch_reports_every_problem_and_writes_nothing(core: CrmCore) -> None:
    tenant = await core.sync_new_tenant(sellers=1)
    good = str(uuid.uuid4())
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await core.directory.BatchUpsertCrmContacts(
            pb.BatchUpsertCrmContactsRequest(
                contacts=[
                    pb.CrmContact(id=good, nome="Fine", updated_at=stamp()),
                    pb.CrmContact(id="nope", emails=["x"], updated_at=stamp()),
                    pb.CrmContact(id=str(uuid.uuid4()), owner_id=str(uuid.uuid4())),
                ]
            ),
            metadata=core.md(tenant.core),
        )
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert violations(error.value) == {
        "contacts[1].id",
        "contacts[1].emails[0]",
        "contacts[2].updated_at",
    }
    listed = await core.directory.BatchUpsertCrmContacts(
        pb.BatchUpsertCrmContactsRequest(
            contacts=[pb.CrmContact(id=good, nome="Fine", updated_at=stamp())]
        ),
        metadata=core.md(tenant.core),
    )
    assert [r.applied for r in listed.results] == [True]


async def test_directory_writes_need_a_tenant_and_the_service_identity(core: CrmCore) -> None:
    tenant = await core.sync_new_tenant(sellers=0)
    request = pb.UpsertCrmUserRequest(
        user=pb.CrmUser(id=str(uuid.uuid4()), nome="X", updated_at=stamp())
    )
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await core.directory.UpsertCrmUser(request, metadata=core.md(Caller(role=Role.SERVICE)))
    assert error.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await core.directory.UpsertCrmUser(request, metadata=core.md(tenant.admin))
    assert error.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_the_demo_tenant_is_applied_through_the_directory_and_repeats_harmlessly(
    db: Database,
) -> None:
    name = f"demo-{uuid.uuid4().hex[:6]}"
    first = await seed_demo(db, name=name)
    again = await seed_demo(db, name=name)
    assert again == first
    admin = Caller(
        role=Role.ADMIN,
        tenant_id=uuid.UUID(first.organizacao_id),
        user_id=uuid.UUID(first.admin_id),
    )
    async with db.unit_of_work(admin) as session:
        names = list(await session.scalars(select(User.nome).order_by(User.nome)))
        stages = list(
            await session.scalars(select(PipelineStage.nome).order_by(PipelineStage.ordem))
        )
        contact = await session.scalar(select(Contact))
    assert names == ["Ana Admin", "Marcos Vendedor"]
    assert stages[0] == "Novo lead" and len(stages) == 5
    assert contact is not None and contact.owner_id == uuid.UUID(first.member_id)


async def test_a_contact_upsert_that_does_not_state_consent_keeps_it(core: CrmCore) -> None:
    tenant = await core.sync_new_tenant(sellers=0)
    md = core.md(tenant.core)
    contact_id = uuid.uuid4()

    async def upsert(minutes: int, **consent: bool) -> None:
        contact = pb.CrmContact(
            id=str(contact_id),
            nome="Bia",
            emails=["bia@cliente.example"],
            updated_at=stamp(minutes),
        )
        if consent:
            contact.consentimento = consent["consentimento"]
        await core.directory.UpsertCrmContact(
            pb.UpsertCrmContactRequest(contact=contact), metadata=md
        )

    async def state() -> tuple[bool | None, int, int]:
        async with core.server.deps.db.unit_of_work(tenant.core) as session:
            contact = await session.get(Contact, contact_id, populate_existing=True)
            assert contact is not None
            members = await session.scalar(select(func.count()).select_from(CustomAudienceMember))
            removals = await session.scalar(
                select(func.count())
                .select_from(PendingEvent)
                .where(PendingEvent.operacao == AUDIENCE_REMOVE.name)
            )
            return contact.consentimento, members or 0, removals or 0

    await upsert(1, consentimento=True)
    async with core.server.deps.db.unit_of_work(tenant.core) as session:
        audience = CustomAudience(
            organizacao_id=tenant.id,
            audience_id="23850000000000001",
            audience_name="Clientes",
            ad_account_id="act_1",
        )
        session.add(audience)
        await session.flush()
        session.add(
            CustomAudienceMember(
                organizacao_id=tenant.id,
                audience_id=audience.id,
                contato_id=contact_id,
                email_hash="a" * 64,
                sincronizado=True,
            )
        )
    # A later write that does not state consent: still consenting, still in the audience.
    await upsert(2)
    assert await state() == (True, 1, 0)
    # An explicit withdrawal: out of every audience at Meta.
    await upsert(3, consentimento=False)
    assert await state() == (False, 0, 1)
