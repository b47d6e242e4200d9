"""The demo tenant, as the CRM core would send it through CrmDirectoryService.

`make run` plays the CRM core: once the server is serving, `sync_demo_directory` sends these
records over gRPC with a service token naming the demo tenant. `python -m server seed` (no
server running) applies the same requests in-process through the directory's own code. The
ids are derived from the name, so every run finds the same tenant; writes are ordered by a
fixed `updated_at`, so repeating the sync changes nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import asdict, dataclass

import grpc
from google.protobuf import timestamp_pb2
from renove.conexoes.v1 import crm_directory_service_pb2 as pb
from renove.conexoes.v1 import crm_directory_service_pb2_grpc as pb_grpc
from renove.conexoes.v1 import resources_pb2

from db.uow import Database
from server.auth.caller import Caller, Role
from server.crm_directory import contacts, fields, inputs, pipelines, users

_NS = uuid.UUID("6f1d1f5e-8a43-4c57-9a3e-2b1c8e0d7a10")
STAGES = ("Novo lead", "Qualificado", "Reuniao agendada", "Proposta", "Fechado")
_SYNCED_AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _id(name: str) -> uuid.UUID:
    return uuid.uuid5(_NS, name)


@dataclass(frozen=True)
class DemoTenant:
    organizacao_id: str
    admin_id: str
    member_id: str
    funil_id: str
    etapa_ids: list[str]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def demo_ids(name: str = "demo") -> DemoTenant:
    """The demo tenant's ids (derived from `name`, no database needed)."""
    return DemoTenant(
        organizacao_id=str(_id(f"{name}:org")),
        admin_id=str(_id(f"{name}:admin")),
        member_id=str(_id(f"{name}:member")),
        funil_id=str(_id(f"{name}:funil")),
        etapa_ids=[str(_id(f"{name}:etapa:{i}")) for i in range(len(STAGES))],
    )


@dataclass(frozen=True)
class DemoDirectory:
    users: pb.BatchUpsertCrmUsersRequest
    pipelines: pb.BatchUpsertCrmPipelinesRequest
    fields: pb.BatchUpsertCrmCustomFieldsRequest
    contacts: pb.BatchUpsertCrmContactsRequest


def demo_directory(demo: DemoTenant) -> DemoDirectory:
    """What the CRM core knows of the demo tenant: an admin and a seller (in lead
    distribution), a pipeline with five stages, one custom field, one contact."""
    at = timestamp_pb2.Timestamp()
    at.FromDatetime(_SYNCED_AT)
    return DemoDirectory(
        users=pb.BatchUpsertCrmUsersRequest(
            users=[
                pb.CrmUser(
                    id=demo.admin_id,
                    nome="Ana Admin",
                    email="ana@demo.renove.example",
                    role=resources_pb2.USER_ROLE_ADMIN,
                    updated_at=at,
                ),
                pb.CrmUser(
                    id=demo.member_id,
                    nome="Marcos Vendedor",
                    email="marcos@demo.renove.example",
                    role=resources_pb2.USER_ROLE_MEMBER,
                    participa_distribuicao=True,
                    updated_at=at,
                ),
            ]
        ),
        pipelines=pb.BatchUpsertCrmPipelinesRequest(
            pipelines=[
                pb.CrmPipeline(
                    id=demo.funil_id,
                    nome="Vendas",
                    etapas=[
                        pb.CrmStage(id=sid, nome=name)
                        for sid, name in zip(demo.etapa_ids, STAGES, strict=True)
                    ],
                    updated_at=at,
                )
            ]
        ),
        fields=pb.BatchUpsertCrmCustomFieldsRequest(
            fields=[
                pb.CrmCustomField(
                    id="orcamento",
                    rotulo="Orcamento",
                    tipo=pb.CUSTOM_FIELD_TYPE_TEXT,
                    updated_at=at,
                )
            ]
        ),
        contacts=pb.BatchUpsertCrmContactsRequest(
            contacts=[
                pb.CrmContact(
                    id=str(_id(f"{demo.organizacao_id}:contato:1")),
                    owner_id=demo.member_id,
                    nome="Joana Cliente",
                    emails=["joana@cliente.example"],
                    telefones=["+55 11 98765-4321"],
                    cidade="Sao Paulo",
                    estado="SP",
                    pais="BR",
                    consentimento=True,
                    updated_at=at,
                )
            ]
        ),
    )


async def sync_demo_directory(channel: grpc.aio.Channel, service_token: str) -> None:
    """Plays the CRM core: sends the demo tenant through CrmDirectoryService (the token is a
    service token naming the demo tenant)."""
    stub = pb_grpc.CrmDirectoryServiceStub(channel)
    directory = demo_directory(demo_ids())
    md = (("authorization", f"Bearer {service_token}"),)
    await stub.BatchUpsertCrmUsers(directory.users, metadata=md)
    await stub.BatchUpsertCrmPipelines(directory.pipelines, metadata=md)
    await stub.BatchUpsertCrmCustomFields(directory.fields, metadata=md)
    await stub.BatchUpsertCrmContacts(directory.contacts, metadata=md)


async def seed_demo(db: Database, *, name: str = "demo") -> DemoTenant:
    """Applies the demo directory in-process (no server running), through the directory's
    code as the CRM core's identity; the same ids every time."""
    demo = demo_ids(name)
    tenant = uuid.UUID(demo.organizacao_id)
    core = Caller(role=Role.SERVICE, tenant_id=tenant)
    await db.ensure_identity(core)
    directory = demo_directory(demo)
    async with db.unit_of_work(core) as session:
        for user in inputs.batch(
            directory.users.users, "users", inputs.user, users.problems_of, lambda v: v.id
        ):
            await users.upsert_user(session, tenant, user)
        for pipeline in inputs.batch(
            directory.pipelines.pipelines,
            "pipelines",
            inputs.pipeline,
            pipelines.problems_of,
            lambda v: v.id,
        ):
            await pipelines.upsert_pipeline(session, tenant, pipeline)
        for field in inputs.batch(
            directory.fields.fields,
            "fields",
            inputs.custom_field,
            fields.problems_of,
            lambda v: v.id,
        ):
            await fields.upsert_field(session, tenant, field)
        for contact in inputs.batch(
            directory.contacts.contacts,
            "contacts",
            inputs.contact,
            lambda v, p: contacts.normalized(v, p)[1],
            lambda v: v.id,
        ):
            await contacts.upsert_contact(session, tenant, contact)
    return demo
