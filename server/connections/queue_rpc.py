"""The dead-letter queue over RPC: list the tenant's jobs, retry or discard a failed one."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import grpc
from renove.conexoes.v1 import connections_service_pb2 as pb
from sqlalchemy import func, select

from db.models import PendingEvent
from server.audit import record_audit, scrub
from server.errors import InvalidArgument
from server.idempotency import answer_in, idempotent
from server.interceptors.context import current_caller
from server.paging import keyset_after, keyset_page, page_size
from server.protoconv import parse_uuid, struct, timestamp
from server.resilience import queue

if TYPE_CHECKING:
    from server.bootstrap import Deps

STATUS_NAMES = {
    pb.QUEUED_EVENT_STATUS_PENDING: "pending",
    pb.QUEUED_EVENT_STATUS_PROCESSING: "processing",
    pb.QUEUED_EVENT_STATUS_FAILED: "failed",
    pb.QUEUED_EVENT_STATUS_COMPLETED: "completed",
    pb.QUEUED_EVENT_STATUS_DISCARDED: "discarded",
}
STATUS_VALUES = {name: value for value, name in STATUS_NAMES.items()}


def failed_event_proto(row: Any) -> pb.FailedEvent:
    """A job row (ORM or `queue.get_job` row) as the DLQ shows it; secrets scrubbed."""
    return pb.FailedEvent(
        id=str(row.id),
        tipo=row.tipo,
        destino=row.destino,
        payload=struct(scrub(dict(row.payload or {}))),
        tentativas=row.tentativas,
        max_tentativas=row.max_tentativas,
        proxima_tentativa=timestamp(row.proxima_tentativa) if row.status == "pending" else None,
        ultimo_erro=row.ultimo_erro or "",
        status=STATUS_VALUES.get(row.status, pb.QUEUED_EVENT_STATUS_UNSPECIFIED),
        idempotency_key=row.idempotency_key,
        criado_em=timestamp(row.criado_em),
        atualizado_em=timestamp(row.atualizado_em),
    )


def _time_range(start_ts: Any, end_ts: Any, has_start: bool, has_end: bool) -> tuple[Any, Any]:
    start = start_ts.ToDatetime(dt.UTC) if has_start else None
    end = end_ts.ToDatetime(dt.UTC) if has_end else None
    if start and end and start > end:
        raise InvalidArgument.field("start_time", "must not be after end_time")
    return start, end


class QueueRpcs:
    deps: Deps

    async def ListFailedEvents(
        self, request: pb.ListFailedEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListFailedEventsResponse:
        caller = current_caller()
        size = page_size(request.page_size)
        status = STATUS_NAMES.get(request.status, "failed")
        filters: list[Any] = [
            PendingEvent.organizacao_id == caller.require_tenant(),
            PendingEvent.status == status,
        ]
        if request.tipo:
            filters.append(PendingEvent.tipo == request.tipo)
        start, end = _time_range(
            request.start_time,
            request.end_time,
            request.HasField("start_time"),
            request.HasField("end_time"),
        )
        if start:
            filters.append(PendingEvent.criado_em >= start)
        if end:
            filters.append(PendingEvent.criado_em < end)
        query = select(PendingEvent).where(*filters)
        after = keyset_after(
            request.page_token,
            (("at", "time"), ("id", "uuid")),
            (PendingEvent.criado_em, PendingEvent.id),
            descending=True,
        )
        if after is not None:
            query = query.where(after)
        query = query.order_by(PendingEvent.criado_em.desc(), PendingEvent.id.desc())
        async with self.deps.db.unit_of_work(caller) as session:
            rows = list(await session.scalars(query.limit(size + 1)))
            total = await session.scalar(
                select(func.count()).select_from(PendingEvent).where(*filters)
            )
        page, token = keyset_page(
            rows, size, lambda r: {"at": r.criado_em.isoformat(), "id": str(r.id)}
        )
        return pb.ListFailedEventsResponse(
            events=[failed_event_proto(r) for r in page],
            next_page_token=token,
            total_size=int(total or 0),
        )

    @idempotent
    async def RetryFailedEvent(
        self, request: pb.RetryFailedEventRequest, context: grpc.aio.ServicerContext
    ) -> pb.RetryFailedEventResponse:
        caller = current_caller()
        job_id = parse_uuid(request.id, "id")
        async with self.deps.db.unit_of_work(caller) as session:
            row = await queue.retry_failed(
                session,
                job_id,
                reset_attempts=request.reset_tentativas,
                now=queue.db_time(self.deps.clock),
            )
            await record_audit(
                session,
                caller,
                "job.retried",
                entity_type="eventos_pendentes",
                entity_id=job_id,
                details={
                    "tipo": row.tipo,
                    "reset_tentativas": request.reset_tentativas,
                    "request_id": request.request_id,
                },
            )
            response = pb.RetryFailedEventResponse(event=failed_event_proto(row))
            await answer_in(session, response)
        return response

    @idempotent
    async def DiscardFailedEvent(
        self, request: pb.DiscardFailedEventRequest, context: grpc.aio.ServicerContext
    ) -> pb.DiscardFailedEventResponse:
        caller = current_caller()
        job_id = parse_uuid(request.id, "id")
        if len(request.motivo) > 500:
            raise InvalidArgument.field("motivo", "at most 500 characters")
        async with self.deps.db.unit_of_work(caller) as session:
            row = await queue.discard_failed(session, job_id)
            await record_audit(
                session,
                caller,
                "job.discarded",
                entity_type="eventos_pendentes",
                entity_id=job_id,
                details={
                    "tipo": row.tipo,
                    "motivo": request.motivo,
                    "request_id": request.request_id,
                },
            )
            response = pb.DiscardFailedEventResponse(event=failed_event_proto(row))
            await answer_in(session, response)
        return response
