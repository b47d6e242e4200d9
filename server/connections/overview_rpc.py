"""GetConnectionsOverview, and the connection list of WatchEvents' snapshot."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import grpc
from renove.conexoes.v1 import connections_service_pb2 as pb
from sqlalchemy import func, select

from db.models import User
from server.auth.caller import Caller
from server.connections.members_rpc import member_proto
from server.connections.overview import assemble, load_rows
from server.errors import PermissionNotGranted
from server.interceptors.context import current_caller
from server.protoconv import parse_uuid, timestamp

if TYPE_CHECKING:
    from server.bootstrap import Deps


class OverviewRpcs:
    deps: Deps

    async def GetConnectionsOverview(
        self, request: pb.GetConnectionsOverviewRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetConnectionsOverviewResponse:
        caller = current_caller()
        whole_tenant = request.scope == pb.OVERVIEW_SCOPE_TENANT
        subject = caller.user_id
        if request.usuario_id:
            subject = parse_uuid(request.usuario_id, "usuario_id")
            if subject != caller.user_id and not caller.is_admin:
                raise PermissionNotGranted("members see only their own connections")
        if whole_tenant and not caller.is_admin:
            raise PermissionNotGranted("only admins see every connection of the tenant")
        connections = await self._overview(caller, None if whole_tenant else subject)
        response = pb.GetConnectionsOverviewResponse(connections=connections)
        async with self.deps.db.unit_of_work(caller) as session:
            me = await session.get(User, caller.user_id) if caller.user_id else None
            now = await session.scalar(select(func.now()))
        if me is not None:
            response.minhas_permissoes.CopyFrom(member_proto(me))
        as_of = timestamp(now)
        if as_of is not None:
            response.as_of.CopyFrom(as_of)
        return response

    async def overview_provider(
        self, caller: Caller, whole_tenant: bool
    ) -> list[pb.ConnectionSummary]:
        return await self._overview(caller, None if whole_tenant else caller.user_id)

    async def _overview(self, caller: Caller, user: uuid.UUID | None) -> list[pb.ConnectionSummary]:
        grants = await self.deps.identities.grants(caller)
        async with self.deps.db.unit_of_work(caller) as session:
            rows = await load_rows(session, user)
            owners = {r.owner for r in rows if r.owner} | ({user} if user else set())
            users = await session.scalars(select(User).where(User.id.in_(owners)))
            names = {u.id: u for u in users}
        # The subject's view: grants shown are the subject's own only when it is the caller.
        return assemble(rows, caller, grants, names, whole_tenant=user is None)
