"""Admin-granted member permissions (usuarios.permissoes_conexoes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from renove.conexoes.v1 import connections_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2
from sqlalchemy import ColumnElement, func, select

from db.models import User
from server.audit import record_audit
from server.errors import InvalidArgument, NotFound
from server.idempotency import answer_in, idempotent
from server.interceptors.context import current_caller
from server.paging import keyset_after, keyset_page, page_size
from server.protoconv import parse_uuid

if TYPE_CHECKING:
    from server.bootstrap import Deps

ROLES = {
    "super_admin": resources_pb2.USER_ROLE_SUPER_ADMIN,
    "admin": resources_pb2.USER_ROLE_ADMIN,
    "member": resources_pb2.USER_ROLE_MEMBER,
}


def member_proto(user: User) -> pb.MemberPermissions:
    grants = user.permissoes_conexoes or {}
    is_admin = user.role in ("admin", "super_admin")
    return pb.MemberPermissions(
        usuario_id=str(user.id),
        nome=user.nome,
        email=user.email or "",
        role=ROLES.get(user.role, resources_pb2.USER_ROLE_UNSPECIFIED),
        # Admins hold every connection permission by role.
        meta_lead_ads=is_admin or grants.get("meta_lead_ads") is True,
        instagram_direct=is_admin or grants.get("instagram_direct") is True,
    )


class MemberRpcs:
    deps: Deps

    async def ListMemberPermissions(
        self, request: pb.ListMemberPermissionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMemberPermissionsResponse:
        size = page_size(request.page_size)
        filters: list[ColumnElement[bool]] = [User.ativo.is_(True)]
        if not request.incluir_admins:
            filters.append(User.role == "member")
        query = select(User).where(*filters).order_by(User.nome, User.id)
        after = keyset_after(
            request.page_token,
            (("nome", "text"), ("id", "uuid")),
            (User.nome, User.id),
            descending=False,
        )
        if after is not None:
            query = query.where(after)
        async with self.deps.db.unit_of_work(current_caller()) as session:
            users = list(await session.scalars(query.limit(size + 1)))
            total = await session.scalar(select(func.count()).select_from(User).where(*filters))
        page, token = keyset_page(users, size, lambda u: {"nome": u.nome, "id": str(u.id)})
        return pb.ListMemberPermissionsResponse(
            members=[member_proto(u) for u in page], next_page_token=token, total_size=total or 0
        )

    @idempotent
    async def UpdateMemberPermissions(
        self, request: pb.UpdateMemberPermissionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateMemberPermissionsResponse:
        caller = current_caller()
        user_id = parse_uuid(request.usuario_id, "usuario_id")
        changes: dict[str, bool] = {}
        if request.HasField("meta_lead_ads"):
            changes["meta_lead_ads"] = request.meta_lead_ads
        if request.HasField("instagram_direct"):
            changes["instagram_direct"] = request.instagram_direct
        if not changes:
            raise InvalidArgument.field("meta_lead_ads", "set meta_lead_ads or instagram_direct")
        async with self.deps.db.unit_of_work(caller) as session:
            user = await session.get(User, user_id, with_for_update=True)
            if user is None:
                raise NotFound("user not found", metadata={"usuario_id": str(user_id)})
            if user.role != "member":
                raise InvalidArgument.field("usuario_id", "admins hold every permission by role")
            before = dict(user.permissoes_conexoes or {})
            user.permissoes_conexoes = {**before, **changes}
            await record_audit(
                session,
                caller,
                "member_permissions.updated",
                entity_type="usuario",
                entity_id=user.id,
                details={"before": {k: before.get(k, False) for k in changes}, "after": changes},
            )
            await session.flush()
            response = pb.UpdateMemberPermissionsResponse(member=member_proto(user))
            await answer_in(session, response)
        return response
