"""Reading the audit log: a tenant admin reads the tenant's, a super admin the platform's."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import grpc
from renove.conexoes.v1 import connections_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2
from sqlalchemy import select

from db.models import AuditEntry
from server.errors import InvalidArgument
from server.interceptors.context import current_caller
from server.paging import KeyKind, keyset_after, keyset_page, page_size
from server.protoconv import parse_uuid, struct, timestamp

if TYPE_CHECKING:
    from server.bootstrap import Deps

_KEYS: tuple[tuple[str, KeyKind], ...] = (("at", "time"), ("id", "uuid"))


def entry_proto(row: AuditEntry) -> pb.AuditLogEntry:
    details = dict(row.details or {})
    return pb.AuditLogEntry(
        id=str(row.id),
        organizacao_id=str(row.organizacao_id) if row.organizacao_id else "",
        ator=resources_pb2.UserRef(usuario_id=str(row.usuario_id) if row.usuario_id else ""),
        acao=row.action,
        entidade_tipo=row.entity_type or "",
        entidade_id=row.entity_id or "",
        detalhes=struct(details),
        request_id=str(details.get("request_id", "")),
        criado_em=timestamp(row.criado_em),
    )


class AuditRpcs:
    deps: Deps

    async def ListAuditLog(
        self, request: pb.ListAuditLogRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAuditLogResponse:
        caller = current_caller()
        size = page_size(request.page_size)
        query = select(AuditEntry).order_by(AuditEntry.criado_em.desc(), AuditEntry.id.desc())
        # RLS already hides other tenants; this keeps a tenant admin's view to the tenant and a
        # platform super admin's view to platform entries.
        query = query.where(AuditEntry.organizacao_id.is_not_distinct_from(caller.tenant_id))
        start = request.start_time.ToDatetime(dt.UTC) if request.HasField("start_time") else None
        end = request.end_time.ToDatetime(dt.UTC) if request.HasField("end_time") else None
        if start and end and start > end:
            raise InvalidArgument.field("start_time", "must not be after end_time")
        if start:
            query = query.where(AuditEntry.criado_em >= start)
        if end:
            query = query.where(AuditEntry.criado_em < end)
        if request.acao:
            query = query.where(AuditEntry.action == request.acao)
        if request.entidade_tipo:
            query = query.where(AuditEntry.entity_type == request.entidade_tipo)
        if request.entidade_id:
            query = query.where(AuditEntry.entity_id == request.entidade_id)
        if request.usuario_id:
            query = query.where(
                AuditEntry.usuario_id == parse_uuid(request.usuario_id, "usuario_id")
            )
        after = keyset_after(
            request.page_token, _KEYS, (AuditEntry.criado_em, AuditEntry.id), descending=True
        )
        if after is not None:
            query = query.where(after)
        async with self.deps.db.unit_of_work(caller) as session:
            rows = list(await session.scalars(query.limit(size + 1)))
        page, token = keyset_page(
            rows, size, lambda r: {"at": r.criado_em.isoformat(), "id": str(r.id)}
        )
        return pb.ListAuditLogResponse(
            entries=[entry_proto(r) for r in page], next_page_token=token
        )
