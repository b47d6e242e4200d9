"""KpisService: the spec's KPIs and the connection status history, for tenant admins."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import grpc
from renove.conexoes.v1 import kpis_service_pb2 as pb
from renove.conexoes.v1 import kpis_service_pb2_grpc as pb_grpc
from renove.conexoes.v1 import resources_pb2 as rpb
from sqlalchemy import select

from db.models import ConnectionStatusChange
from server.errors import InvalidArgument
from server.interceptors.context import current_caller
from server.kpis.figures import read_figures
from server.kpis.views import change_proto, kpis_response, type_word
from server.paging import KeyKind, keyset_after, keyset_page, page_size
from server.protoconv import parse_uuid

if TYPE_CHECKING:
    from server.bootstrap import Deps

MAX_PERIOD = dt.timedelta(days=366)
_KEYS: tuple[tuple[str, KeyKind], ...] = (("at", "time"), ("id", "uuid"))
_ALL_TYPES = [
    type_word(v) for v in rpb.ConnectionType.values() if v != rpb.CONNECTION_TYPE_UNSPECIFIED
]


class KpisServicer(pb_grpc.KpisServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def GetConnectionKpis(
        self, request: pb.GetConnectionKpisRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetConnectionKpisResponse:
        if not request.HasField("start_time"):
            raise InvalidArgument.field("start_time", "is required")
        start = request.start_time.ToDatetime(dt.UTC)
        end = request.end_time.ToDatetime(dt.UTC) if request.HasField("end_time") else None
        end = end or self.deps.clock.now()
        if start >= end:
            raise InvalidArgument.field("start_time", "must be before end_time")
        if end - start > MAX_PERIOD:
            raise InvalidArgument.field("start_time", "the period may not exceed 366 days")
        only = request.connection_type
        if only and only not in rpb.ConnectionType.values():
            raise InvalidArgument.field("connection_type", "unknown connection type")
        only_type = type_word(only) if only else None
        async with self.deps.db.unit_of_work(current_caller()) as session:
            figures = await read_figures(session, start, end, only_type)
        return kpis_response(figures, start, end, [only_type] if only_type else _ALL_TYPES)

    async def ListConnectionStatusHistory(
        self, request: pb.ListConnectionStatusHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListConnectionStatusHistoryResponse:
        size = page_size(request.page_size)
        model = ConnectionStatusChange
        query = select(model).order_by(model.em.desc(), model.id.desc())
        if request.connection_id:
            query = query.where(
                model.conexao_id == parse_uuid(request.connection_id, "connection_id")
            )
        if request.connection_type:
            if request.connection_type not in rpb.ConnectionType.values():
                raise InvalidArgument.field("connection_type", "unknown connection type")
            query = query.where(model.tipo == type_word(request.connection_type))
        after = keyset_after(request.page_token, _KEYS, (model.em, model.id), descending=True)
        if after is not None:
            query = query.where(after)
        async with self.deps.db.unit_of_work(current_caller()) as session:
            rows = list(await session.scalars(query.limit(size + 1)))
        page, token = keyset_page(rows, size, lambda r: {"at": r.em.isoformat(), "id": str(r.id)})
        return pb.ListConnectionStatusHistoryResponse(
            changes=[
                change_proto(r.tipo, str(r.conexao_id), r.status, r.motivo, r.em) for r in page
            ],
            next_page_token=token,
        )


def register(server: grpc.aio.Server, deps: Deps) -> str:
    pb_grpc.add_KpisServiceServicer_to_server(KpisServicer(deps), server)
    return "renove.conexoes.v1.KpisService"
