"""Plays the CRM core in tests: a service-identity client of CrmDirectoryService and of the
change feed (WatchEvents with after_sequence)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import timestamp_pb2
from renove.conexoes.v1 import connections_service_pb2 as cpb
from renove.conexoes.v1 import connections_service_pb2_grpc as cpb_grpc
from renove.conexoes.v1 import crm_directory_service_pb2 as pb
from renove.conexoes.v1 import crm_directory_service_pb2_grpc as pb_grpc
from renove.conexoes.v1 import resources_pb2
from sqlalchemy import select

from db.models import OutboxSequence
from server.auth.caller import Caller, Role
from tests.support.grpc_server import RunningServer

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def stamp(minutes: float = 0) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(T0 + dt.timedelta(minutes=minutes))
    return ts


@dataclass
class DirectoryTenant:
    """A tenant known only through the directory: its ids, as the core would hold them."""

    id: uuid.UUID
    admin_id: uuid.UUID
    sellers: tuple[uuid.UUID, ...]
    funil_id: uuid.UUID
    etapa_ids: tuple[uuid.UUID, ...]

    @property
    def admin(self) -> Caller:
        return Caller(role=Role.ADMIN, tenant_id=self.id, user_id=self.admin_id)

    @property
    def core(self) -> Caller:
        return Caller(role=Role.SERVICE, tenant_id=self.id)


class CrmCore:
    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.directory = pb_grpc.CrmDirectoryServiceStub(server.channel)
        self.connections = cpb_grpc.ConnectionsServiceStub(server.channel)

    def md(self, caller: Caller) -> tuple[tuple[str, str], ...]:
        return self.server.metadata(caller)

    async def sync_new_tenant(
        self, *, sellers: int = 2, custom_fields: Sequence[tuple[str, str]] = ()
    ) -> DirectoryTenant:
        """The core's first sync of a brand-new tenant: users (an admin and `sellers` who take
        part in lead distribution), one pipeline with three stages, custom fields."""
        tenant = DirectoryTenant(
            id=uuid.uuid4(),
            admin_id=uuid.uuid4(),
            sellers=tuple(uuid.uuid4() for _ in range(sellers)),
            funil_id=uuid.uuid4(),
            etapa_ids=(uuid.uuid4(), uuid.uuid4(), uuid.uuid4()),
        )
        md = self.md(tenant.core)
        users = [
            pb.CrmUser(
                id=str(tenant.admin_id),
                nome="Ana Admin",
                email="ana@core.example",
                role=resources_pb2.USER_ROLE_ADMIN,
                updated_at=stamp(),
            ),
            *(
                pb.CrmUser(
                    id=str(seller),
                    nome=f"Vendedor {i + 1}",
                    email=f"vendedor{i + 1}@core.example",
                    role=resources_pb2.USER_ROLE_MEMBER,
                    participa_distribuicao=True,
                    updated_at=stamp(),
                )
                for i, seller in enumerate(tenant.sellers)
            ),
        ]
        await self.directory.BatchUpsertCrmUsers(
            pb.BatchUpsertCrmUsersRequest(users=users), metadata=md
        )
        await self.directory.BatchUpsertCrmPipelines(
            pb.BatchUpsertCrmPipelinesRequest(
                pipelines=[
                    pb.CrmPipeline(
                        id=str(tenant.funil_id),
                        nome="Vendas",
                        etapas=[
                            pb.CrmStage(id=str(s), nome=n)
                            for s, n in zip(
                                tenant.etapa_ids, ("Novos Leads", "MQL", "Proposta"), strict=True
                            )
                        ],
                        updated_at=stamp(),
                    )
                ]
            ),
            metadata=md,
        )
        if custom_fields:
            await self.directory.BatchUpsertCrmCustomFields(
                pb.BatchUpsertCrmCustomFieldsRequest(
                    fields=[
                        pb.CrmCustomField(
                            id=fid, rotulo=label, tipo=pb.CUSTOM_FIELD_TYPE_TEXT, updated_at=stamp()
                        )
                        for fid, label in custom_fields
                    ]
                ),
                metadata=md,
            )
        return tenant

    def watch_feed(
        self, caller: Caller, after: int, kinds: Sequence[int] = ()
    ) -> grpc.aio.UnaryStreamCall:
        return self.connections.WatchEvents(
            cpb.WatchEventsRequest(after_sequence=after, kinds=list(kinds)),
            metadata=self.md(caller),
        )


async def replayed_changes(
    server: RunningServer, tenant_id: uuid.UUID, after: int = 0
) -> list[cpb.ConnectionEvent]:
    """What the CRM core resuming with `after_sequence = after` is given: the replay, up to
    the tenant's last recorded change."""
    core = Caller(role=Role.SERVICE, tenant_id=tenant_id)
    async with server.deps.db.unit_of_work(core) as session:
        last = await session.scalar(select(OutboxSequence.ultima_sequencia)) or 0
    call = cpb_grpc.ConnectionsServiceStub(server.channel).WatchEvents(
        cpb.WatchEventsRequest(after_sequence=after), metadata=server.metadata(core)
    )
    got: list[cpb.ConnectionEvent] = []
    try:
        async with asyncio.timeout(15):
            while (got[-1].sequence if got else after) < last:
                message = await call.read()
                assert message is not grpc.aio.EOF
                if message.WhichOneof("kind") == "event":
                    got.append(message.event)
    finally:
        call.cancel()
    return got


def connection_changes(events: Sequence[cpb.ConnectionEvent]) -> list[tuple[int, str]]:
    """(connection type, status) of each CONNECTION_CHANGED, in feed order."""
    return [
        (e.connection_type, e.payload["status"])
        for e in events
        if e.kind == cpb.EVENT_KIND_CONNECTION_CHANGED
    ]
