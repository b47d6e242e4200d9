"""Rows of the Conversions API tables as protos (pure functions)."""

from __future__ import annotations

from renove.conexoes.v1 import conversions_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2

from db.models import ConversionsApiConfig, ConversionsApiLog
from server.conversions.events import DEFAULT_ENABLED
from server.conversions.reports import EventCounts, Stats
from server.protoconv import struct, timestamp

_LOG_STATUS = {
    "pending": pb.CAPI_LOG_STATUS_PENDING,
    "sent": pb.CAPI_LOG_STATUS_SENT,
    "failed": pb.CAPI_LOG_STATUS_FAILED,
}
LOG_STATUS_WORDS = {v: k for k, v in _LOG_STATUS.items()}


def _status(row: ConversionsApiConfig) -> resources_pb2.ConnectionStatus.ValueType:
    if row.status == "revoked":
        return resources_pb2.CONNECTION_STATUS_REVOKED
    if row.status == "expired":
        return resources_pb2.CONNECTION_STATUS_EXPIRED
    if row.ultimo_teste_sucesso is False or row.status == "error":
        return resources_pb2.CONNECTION_STATUS_ERROR
    if not row.ativo:
        return resources_pb2.CONNECTION_STATUS_DISCONNECTED
    return resources_pb2.CONNECTION_STATUS_ACTIVE


def default_config() -> pb.CapiConfig:
    return pb.CapiConfig(
        eventos_habilitados=pb.CapiEnabledEvents(**DEFAULT_ENABLED),
        config_eventos=pb.CapiEventSettings(won=pb.CapiWonEventSettings(enviar_valor=True)),
        ativo=False,
        status=resources_pb2.CONNECTION_STATUS_DISCONNECTED,
    )


def config(row: ConversionsApiConfig | None) -> pb.CapiConfig:
    if row is None:
        return default_config()
    events = {**DEFAULT_ENABLED, **(row.eventos_habilitados or {})}
    won = ((row.config_eventos or {}).get("won") or {}).get("enviar_valor", True)
    out = pb.CapiConfig(
        id=str(row.id),
        pixel_id=row.pixel_id,
        access_token_set=bool(row.access_token_encrypted),
        eventos_habilitados=pb.CapiEnabledEvents(**{k: bool(events[k]) for k in DEFAULT_ENABLED}),
        config_eventos=pb.CapiEventSettings(won=pb.CapiWonEventSettings(enviar_valor=bool(won))),
        ativo=bool(row.ativo),
        status=_status(row),
        ultimo_teste=timestamp(row.ultimo_teste),
        total_eventos_enviados=row.total_eventos_enviados or 0,
        total_eventos_sucesso=row.total_eventos_sucesso or 0,
        ultimo_evento_enviado=timestamp(row.ultimo_evento_enviado),
        ultimo_erro=row.ultimo_erro or "",
        criado_em=timestamp(row.criado_em),
        atualizado_em=timestamp(row.atualizado_em),
    )
    if row.ultimo_teste_sucesso is not None:
        out.ultimo_teste_sucesso = row.ultimo_teste_sucesso
    return out


def log_entry(row: ConversionsApiLog) -> pb.CapiLogEntry:
    return pb.CapiLogEntry(
        id=str(row.id),
        config_id=str(row.config_id) if row.config_id else "",
        event_name=row.event_name,
        event_time=timestamp(row.event_time),
        event_id=row.event_id or "",
        entidade_tipo=row.entidade_tipo or "",
        entidade_id=str(row.entidade_id) if row.entidade_id else "",
        payload_resumo=struct(row.payload_resumo),
        status=_LOG_STATUS.get(row.status, pb.CAPI_LOG_STATUS_UNSPECIFIED),
        response_code=row.response_code or 0,
        response_body=row.response_body or "",
        fbrq_event_id=row.fbrq_event_id or "",
        tentativas=row.tentativas,
        teste=row.teste,
        criado_em=timestamp(row.criado_em),
    )


def _counts(name: str, c: EventCounts) -> pb.CapiEventStats:
    return pb.CapiEventStats(
        event_name=name,
        enviados=c.attempted,
        sucesso=c.sent,
        falhas=c.failed,
        pendentes=c.pending,
        nao_enviados=c.not_sent,
    )


def stats(s: Stats) -> pb.GetCapiStatsResponse:
    return pb.GetCapiStatsResponse(
        period_start=timestamp(s.start),
        period_end=timestamp(s.end),
        eventos_enviados=s.total.attempted,
        eventos_sucesso=s.total.sent,
        eventos_falha=s.total.failed,
        eventos_pendentes=s.total.pending,
        eventos_nao_enviados=s.total.not_sent,
        taxa_sucesso=s.success_rate,
        ultimo_envio=timestamp(s.last_send),
        por_evento=[_counts(name, c) for name, c in sorted(s.by_event.items())],
    )
