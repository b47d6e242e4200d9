"""MetaLeadsService: the thin servicer (proto <-> the Lead Ads room). Permissions (admin, or a
member granted `conexao.meta_lead_ads`) are enforced by the interceptor before any of this."""

from __future__ import annotations

from typing import Any

import grpc
from renove.conexoes.v1 import meta_leads_service_pb2 as pb
from renove.conexoes.v1 import meta_leads_service_pb2_grpc as pb_grpc
from renove.conexoes.v1 import resources_pb2
from sqlalchemy import func, select

from db.models import LeadAdsForm, MetaPage
from server.bootstrap import Deps
from server.errors import InvalidArgument
from server.idempotency import idempotent
from server.interceptors.context import current_caller
from server.meta_leads import forms, mappings, oauth, pages, views
from server.meta_leads.connection import live_connection
from server.meta_leads.jobs import register_jobs as _register_jobs
from server.paging import decode_token, encode_token, page_size
from server.protoconv import timestamp
from server.providers.meta_graph import LEAD_ADS_SCOPES

_MAX_PAGE = 100


def _window(items: list[Any], size: int, token: str, cap: int = _MAX_PAGE) -> tuple[list[Any], str]:
    cursor = decode_token(token) or {}
    start = int(cursor.get("o", 0))
    size = min(page_size(size), cap)
    chunk = items[start : start + size]
    more = start + size < len(items)
    return chunk, encode_token({"o": start + size}) if more else ""


def _input(m: pb.LeadFormMapping) -> mappings.MappingInput:
    return mappings.MappingInput(
        page_id=m.page_id.strip(),
        form_id=m.form_id.strip(),
        form_name=m.form_name.strip(),
        funil_id=m.funil_id.strip(),
        etapa_destino_id=m.etapa_destino_id.strip(),
        owner_id=m.owner_id.strip(),
        mapeamento_campos=dict(m.mapeamento_campos),
        criar_oportunidade=m.criar_oportunidade if m.HasField("criar_oportunidade") else True,
        tags_automaticas=list(m.tags_automaticas),
        notificar_owner=m.notificar_owner if m.HasField("notificar_owner") else True,
        ativo=m.ativo if m.HasField("ativo") else True,
    )


def _present(m: pb.LeadFormMapping) -> set[str]:
    """Without an update_mask: the writable fields the body sets (proto3 cannot tell an
    empty string from an absent one, so empty strings count as absent)."""
    paths = {f.name for f, _ in m.ListFields()}
    return paths & mappings.WRITABLE


class MetaLeadsServicer(pb_grpc.MetaLeadsServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def GetMetaAuthUrl(
        self, request: pb.GetMetaAuthUrlRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMetaAuthUrlResponse:
        url = await oauth.auth_url(self.deps, current_caller(), request.return_to)
        return pb.GetMetaAuthUrlResponse(
            oauth=resources_pb2.OAuthUrl(
                auth_url=url.url,
                state=url.state,
                expires_at=timestamp(url.expires_at),
                scopes=list(LEAD_ADS_SCOPES),
                redirect_uri=url.redirect_uri,
            )
        )

    async def HandleMetaOAuthCallback(
        self, request: pb.HandleMetaOAuthCallbackRequest, context: grpc.aio.ServicerContext
    ) -> pb.HandleMetaOAuthCallbackResponse:
        result = await oauth.handle_callback(
            self.deps,
            code=request.code,
            state_token=request.state,
            error=request.error,
            error_reason=request.error_reason,
        )
        return pb.HandleMetaOAuthCallbackResponse(
            result=resources_pb2.OAuthCallbackResult(
                sucesso=result.ok,
                redirect_url=result.redirect_url,
                connection_type=resources_pb2.CONNECTION_TYPE_META_LEAD_ADS,
                connection_id=result.connection_id,
                motivo_erro=result.reason,
                mensagem=result.message,
                scopes_concedidos=list(result.scopes),
            )
        )

    async def GetMetaConnection(
        self, request: pb.GetMetaConnectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMetaConnectionResponse:
        async with self.deps.db.unit_of_work(current_caller()) as session:
            row = await live_connection(session)
            return pb.GetMetaConnectionResponse(connection=await views.connection(session, row))

    @idempotent
    async def DisconnectMeta(
        self, request: pb.DisconnectMetaRequest, context: grpc.aio.ServicerContext
    ) -> pb.DisconnectMetaResponse:
        caller = current_caller()
        row = await oauth.disconnect(self.deps, caller)
        async with self.deps.db.unit_of_work(caller) as session:
            return pb.DisconnectMetaResponse(connection=await views.connection(session, row))

    async def ListMetaPages(
        self, request: pb.ListMetaPagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMetaPagesResponse:
        found = await pages.list_pages(self.deps, current_caller())
        chunk, token = _window(found, request.page_size, request.page_token)
        return pb.ListMetaPagesResponse(
            pages=[views.page_view(p) for p in chunk], next_page_token=token
        )

    @idempotent
    async def SelectMetaPage(
        self, request: pb.SelectMetaPageRequest, context: grpc.aio.ServicerContext
    ) -> pb.SelectMetaPageResponse:
        if not request.page_id.strip():
            raise InvalidArgument.field("page_id", "required")
        row = await pages.select_page(self.deps, current_caller(), request.page_id.strip())
        return pb.SelectMetaPageResponse(page=views.page_row(row))

    async def ListMetaLeadForms(
        self, request: pb.ListMetaLeadFormsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMetaLeadFormsResponse:
        if not request.page_id.strip():
            raise InvalidArgument.field("page_id", "required")
        found = await forms.list_forms(
            self.deps,
            current_caller(),
            request.page_id.strip(),
            include_archived=request.incluir_arquivados,
        )
        chunk, token = _window(found, request.page_size, request.page_token)
        return pb.ListMetaLeadFormsResponse(
            forms=[views.form_view(f) for f in chunk], next_page_token=token
        )

    async def ListLeadFormMappings(
        self, request: pb.ListLeadFormMappingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListLeadFormMappingsResponse:
        query = select(LeadAdsForm).where(LeadAdsForm.deletado_em.is_(None))
        if request.page_id:
            query = query.join(MetaPage, MetaPage.id == LeadAdsForm.pagina_id).where(
                MetaPage.page_id == request.page_id
            )
        if request.HasField("ativo"):
            query = query.where(LeadAdsForm.ativo.is_(request.ativo))
        cursor = decode_token(request.page_token) or {}
        start = int(cursor.get("o", 0))
        size = min(page_size(request.page_size), 200)
        async with self.deps.db.unit_of_work(current_caller()) as session:
            total = await session.scalar(select(func.count()).select_from(query.subquery()))
            rows = list(
                await session.scalars(
                    query.order_by(LeadAdsForm.criado_em.desc(), LeadAdsForm.id)
                    .offset(start)
                    .limit(size)
                )
            )
            items = [await views.mapping(session, r) for r in rows]
        more = start + size < int(total or 0)
        return pb.ListLeadFormMappingsResponse(
            mappings=items,
            next_page_token=encode_token({"o": start + size}) if more else "",
            total_size=int(total or 0),
        )

    @idempotent
    async def CreateLeadFormMapping(
        self, request: pb.CreateLeadFormMappingRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateLeadFormMappingResponse:
        caller = current_caller()
        row = await mappings.create(self.deps, caller, _input(request.mapping))
        async with self.deps.db.unit_of_work(caller) as session:
            return pb.CreateLeadFormMappingResponse(
                mapping=await views.mapping(session, await mappings.get(session, str(row.id)))
            )

    async def GetLeadFormMapping(
        self, request: pb.GetLeadFormMappingRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetLeadFormMappingResponse:
        async with self.deps.db.unit_of_work(current_caller()) as session:
            row = await mappings.get(session, request.id)
            return pb.GetLeadFormMappingResponse(mapping=await views.mapping(session, row))

    @idempotent
    async def UpdateLeadFormMapping(
        self, request: pb.UpdateLeadFormMappingRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateLeadFormMappingResponse:
        caller = current_caller()
        paths = (
            {p.removeprefix("mapping.") for p in request.update_mask.paths}
            if request.update_mask.paths
            else _present(request.mapping)
        )
        row = await mappings.update(self.deps, caller, request.id, _input(request.mapping), paths)
        async with self.deps.db.unit_of_work(caller) as session:
            fresh = await mappings.get(session, str(row.id))
            return pb.UpdateLeadFormMappingResponse(mapping=await views.mapping(session, fresh))

    @idempotent
    async def DeleteLeadFormMapping(
        self, request: pb.DeleteLeadFormMappingRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteLeadFormMappingResponse:
        await mappings.delete(self.deps, current_caller(), request.id)
        return pb.DeleteLeadFormMappingResponse()


def register(server: grpc.aio.Server, deps: Deps) -> str:
    pb_grpc.add_MetaLeadsServiceServicer_to_server(MetaLeadsServicer(deps), server)
    return "renove.conexoes.v1.MetaLeadsService"


def register_jobs(deps: Deps) -> None:
    _register_jobs(deps)
