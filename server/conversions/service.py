"""ConversionsService: the thin servicer (proto <-> the Conversions API room). Admin only,
enforced by the permission interceptor before any of this."""

from __future__ import annotations

import grpc
from renove.conexoes.v1 import conversions_service_pb2 as pb
from renove.conexoes.v1 import conversions_service_pb2_grpc as pb_grpc

from server.audit import record_audit
from server.bootstrap import Deps
from server.conversions import config as capi_config
from server.conversions import reports, testing, views
from server.conversions.events import EVENT_NAMES
from server.conversions.jobs import register_jobs as _register_jobs
from server.errors import InvalidArgument
from server.idempotency import answer_in, idempotent
from server.interceptors.context import current_caller
from server.protoconv import from_timestamp, timestamp

_SERVICE = "ConversionsService"
_EVENT_PATHS = {f"eventos_habilitados.{k}" for k in EVENT_NAMES}
_PATHS = {
    "pixel_id",
    "access_token",
    "eventos_habilitados",
    "config_eventos",
    "config_eventos.won",
    "config_eventos.won.enviar_valor",
    "ativo",
} | _EVENT_PATHS


def _change(request: pb.SaveCapiConfigRequest) -> capi_config.ConfigChange:
    paths = set(request.update_mask.paths)
    for path in paths - _PATHS:
        raise InvalidArgument.field("update_mask", f"unknown path {path!r}")
    if not paths:  # every field the request sets; an empty token keeps the stored one
        paths = {"pixel_id"} if request.pixel_id else set()
        paths |= {"access_token"} if request.access_token else set()
        paths |= {"eventos_habilitados"} if request.HasField("eventos_habilitados") else set()
        paths |= {"config_eventos"} if request.HasField("config_eventos") else set()
        paths |= {"ativo"} if request.HasField("ativo") else set()
    events = {
        k: getattr(request.eventos_habilitados, k)
        for k in EVENT_NAMES
        if "eventos_habilitados" in paths or f"eventos_habilitados.{k}" in paths
    }
    won = paths & {"config_eventos", "config_eventos.won", "config_eventos.won.enviar_valor"}
    return capi_config.ConfigChange(
        pixel_id=request.pixel_id.strip() if "pixel_id" in paths else None,
        access_token=request.access_token.strip() or None if "access_token" in paths else None,
        events=events,
        enviar_valor=request.config_eventos.won.enviar_valor if won else None,
        ativo=request.ativo if "ativo" in paths else None,
    )


class ConversionsServicer(pb_grpc.ConversionsServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def GetCapiConfig(
        self, request: pb.GetCapiConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCapiConfigResponse:
        async with self.deps.db.unit_of_work(current_caller()) as session:
            return pb.GetCapiConfigResponse(config=views.config(await capi_config.load(session)))

    @idempotent
    async def SaveCapiConfig(
        self, request: pb.SaveCapiConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.SaveCapiConfigResponse:
        caller = current_caller()
        assert caller.tenant_id is not None
        change = _change(request)
        async with self.deps.db.unit_of_work(caller) as session:
            row = await capi_config.save(self.deps, session, caller.tenant_id, change)
            await record_audit(
                session,
                caller,
                "capi.config_saved",
                entity_type="config_conversions_api",
                entity_id=row.id,
                details={
                    "pixel_id": row.pixel_id,
                    "token_changed": change.access_token is not None,
                    "ativo": bool(row.ativo),
                    "eventos_habilitados": dict(row.eventos_habilitados or {}),
                },
            )
            response = pb.SaveCapiConfigResponse(config=views.config(row))
            await answer_in(session, response)
            return response

    @idempotent
    async def TestCapiConnection(
        self, request: pb.TestCapiConnectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.TestCapiConnectionResponse:
        result = await testing.run_test(
            self.deps,
            current_caller(),
            event_name=request.event_name.strip(),
            test_event_code=request.test_event_code.strip(),
            pixel_id=request.pixel_id.strip(),
            access_token=request.access_token.strip(),
        )
        return pb.TestCapiConnectionResponse(
            sucesso=result.ok,
            events_received=result.events_received,
            fbtrace_id=result.fbtrace_id,
            event_id=result.event_id,
            response_code=result.response_code,
            mensagem=result.message,
            messages=list(result.messages),
            testado_em=timestamp(result.tested_at),
        )

    async def ListCapiLogs(
        self, request: pb.ListCapiLogsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCapiLogsResponse:
        f = reports.LogFilter(
            status=views.LOG_STATUS_WORDS.get(request.status, ""),
            event_name=request.event_name.strip(),
            start=from_timestamp(request.start_time, request.HasField("start_time")),
            end=from_timestamp(request.end_time, request.HasField("end_time")),
            entidade_id=request.entidade_id.strip(),
        )
        async with self.deps.db.unit_of_work(current_caller()) as session:
            rows, token, total = await reports.list_logs(
                session, f, request.page_size, request.page_token
            )
        return pb.ListCapiLogsResponse(
            logs=[views.log_entry(r) for r in rows], next_page_token=token, total_size=total
        )

    async def GetCapiStats(
        self, request: pb.GetCapiStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCapiStatsResponse:
        if request.period_days < 0 or request.period_days > 365:
            raise InvalidArgument.field("period_days", "between 1 and 365")
        async with self.deps.db.unit_of_work(current_caller()) as session:
            found = await reports.stats(session, self.deps.clock.now(), request.period_days)
        return views.stats(found)


def register(server: grpc.aio.Server, deps: Deps) -> str:
    pb_grpc.add_ConversionsServiceServicer_to_server(ConversionsServicer(deps), server)
    return f"renove.conexoes.v1.{_SERVICE}"


register_jobs = _register_jobs
