"""Alerts over RPC: list what the caller may see, acknowledge one."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import grpc
from renove.conexoes.v1 import connections_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2
from sqlalchemy import func, select

from db.models import Alert
from server.audit import record_audit
from server.errors import InvalidArgument, NotFound
from server.idempotency import answer_in, idempotent
from server.interceptors.context import current_caller
from server.paging import keyset_after, keyset_page
from server.protoconv import parse_uuid, struct, timestamp
from server.resilience.alerts import DETAIL_KEYS, SEVERITIES, open_alert, visible_to

if TYPE_CHECKING:
    from server.bootstrap import Deps

MAX_ALERTS_PAGE = 200
_DEFAULT_TITLES = {
    "circuit_open": "Provedor indisponivel",
    "retry_backlog": "Fila de retry acumulada",
    "permanent_failure": "Evento falhou definitivamente",
    "token_refresh_failed": "Conexao precisa ser reconectada",
}


class AlertNotFound(NotFound):
    reason = "ALERT_NOT_FOUND"


def _alert_kind(name: str) -> pb.AlertKind.ValueType:
    try:
        return pb.AlertKind.Value("ALERT_KIND_" + name.upper())
    except ValueError:
        return pb.ALERT_KIND_UNSPECIFIED


def _severity(name: str) -> pb.AlertSeverity.ValueType:
    try:
        return pb.AlertSeverity.Value("ALERT_SEVERITY_" + name.upper())
    except ValueError:
        return pb.ALERT_SEVERITY_UNSPECIFIED


def connection_type_of(name: object) -> resources_pb2.ConnectionType.ValueType:
    if isinstance(name, str) and name:
        try:
            return resources_pb2.ConnectionType.Value("CONNECTION_TYPE_" + name.upper())
        except ValueError:
            pass
    return resources_pb2.CONNECTION_TYPE_UNSPECIFIED


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def alert_proto(row: Alert) -> pb.Alert:
    details = dict(row.details or {})
    by = details.get("reconhecido_por")
    return pb.Alert(
        id=str(row.id),
        kind=_alert_kind(row.kind),
        severity=_severity(row.severity),
        titulo=str(details.get("titulo") or _DEFAULT_TITLES.get(row.kind, row.kind)),
        mensagem=row.message,
        connection_type=connection_type_of(details.get("connection_type")),
        usuario=resources_pb2.UserRef(usuario_id=str(row.usuario_id)) if row.usuario_id else None,
        entidade_tipo=str(details.get("entidade_tipo") or ""),
        entidade_id=str(details.get("entidade_id") or ""),
        detalhes=struct({k: v for k, v in details.items() if k not in DETAIL_KEYS}),
        criado_em=timestamp(row.criado_em),
        reconhecido_em=timestamp(row.lido_em),
        reconhecido_por=resources_pb2.UserRef(usuario_id=str(by)) if by else None,
        resolvido_em=timestamp(_parse_time(details.get("resolvido_em"))),
        ocorrencias=int(details.get("ocorrencias") or 1),
        ultima_ocorrencia=timestamp(_parse_time(details.get("ultima_ocorrencia")) or row.criado_em),
    )


class AlertRpcs:
    deps: Deps

    async def ListAlerts(
        self, request: pb.ListAlertsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAlertsResponse:
        caller = current_caller()
        if request.page_size < 0:
            raise InvalidArgument.field("page_size", "must not be negative")
        size = min(request.page_size or 50, MAX_ALERTS_PAGE)
        filters: list[Any] = list(visible_to(caller))
        if request.kind:
            filters.append(
                Alert.kind == pb.AlertKind.Name(request.kind).removeprefix("ALERT_KIND_").lower()
            )
        if request.min_severity:
            wanted = pb.AlertSeverity.Name(request.min_severity).removeprefix("ALERT_SEVERITY_")
            index = SEVERITIES.index(wanted.lower())
            filters.append(Alert.severity.in_(SEVERITIES[index:]))
        if not request.incluir_reconhecidos:
            filters.append(Alert.lido_em.is_(None))
        if not request.incluir_resolvidos:
            filters.append(open_alert()[1])
        query = select(Alert).where(*filters)
        after = keyset_after(
            request.page_token,
            (("at", "time"), ("id", "uuid")),
            (Alert.criado_em, Alert.id),
            descending=True,
        )
        if after is not None:
            query = query.where(after)
        query = query.order_by(Alert.criado_em.desc(), Alert.id.desc()).limit(size + 1)
        async with self.deps.db.unit_of_work(caller) as session:
            rows = list(await session.scalars(query))
            total = await session.scalar(select(func.count()).select_from(Alert).where(*filters))
        page, token = keyset_page(
            rows, size, lambda r: {"at": r.criado_em.isoformat(), "id": str(r.id)}
        )
        return pb.ListAlertsResponse(
            alerts=[alert_proto(r) for r in page], next_page_token=token, total_size=int(total or 0)
        )

    @idempotent
    async def AcknowledgeAlert(
        self, request: pb.AcknowledgeAlertRequest, context: grpc.aio.ServicerContext
    ) -> pb.AcknowledgeAlertResponse:
        caller = current_caller()
        alert_id = parse_uuid(request.id, "id")
        async with self.deps.db.unit_of_work(caller) as session:
            row = await session.scalar(
                select(Alert).where(Alert.id == alert_id, *visible_to(caller)).with_for_update()
            )
            if row is None:
                raise AlertNotFound("no such alert", metadata={"id": str(alert_id)})
            if row.lido_em is None:  # acknowledging twice keeps the first time and person
                row.lido_em = await session.scalar(select(func.now()))
                if caller.user_id is not None:
                    row.details = {**(row.details or {}), "reconhecido_por": str(caller.user_id)}
                await session.flush()
                await record_audit(
                    session,
                    caller,
                    "alert.acknowledged",
                    entity_type="alerts",
                    entity_id=row.id,
                    details={"kind": row.kind},
                    tenant_id=row.organizacao_id,
                )
            response = pb.AcknowledgeAlertResponse(alert=alert_proto(row))
            await answer_in(session, response)
        return response
