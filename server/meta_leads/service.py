"""MetaLeadsService: the thin servicer (proto <-> the Lead Ads room). Permissions (admin, or a
member granted `conexao.meta_lead_ads`) are enforced by the interceptor before any of this."""

from __future__ import annotations

import grpc
from renove.conexoes.v1 import meta_leads_service_pb2 as pb
from renove.conexoes.v1 import meta_leads_service_pb2_grpc as pb_grpc
from renove.conexoes.v1 import resources_pb2

from server.bootstrap import Deps
from server.errors import InvalidArgument
from server.idempotency import idempotent
from server.interceptors.context import current_caller
from server.meta_leads import forms, mapping_details, mappings, oauth, pages, views
from server.meta_leads.connection import describe, live_connection
from server.meta_leads.jobs import register_jobs as _register_jobs
from server.oauth_views import callback_result, hand_binding, oauth_url
from server.paging import window
from server.providers.meta_graph import LEAD_ADS_SCOPES
from server.security.browser_binding import nonce_from_metadata

# Graph answers these lists whole; they are cut into pages here.
_MAX_PAGE = 100


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
        await hand_binding(context, self.deps, url.binding)
        return pb.GetMetaAuthUrlResponse(
            oauth=oauth_url(
                url=url.url,
                state=url.state,
                expires_at=url.expires_at,
                scopes=LEAD_ADS_SCOPES,
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
            browser_nonce=nonce_from_metadata(context.invocation_metadata()),
        )
        return pb.HandleMetaOAuthCallbackResponse(
            result=callback_result(result, resources_pb2.CONNECTION_TYPE_META_LEAD_ADS)
        )

    async def GetMetaConnection(
        self, request: pb.GetMetaConnectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMetaConnectionResponse:
        async with self.deps.db.unit_of_work(current_caller()) as session:
            detail = await describe(session, await live_connection(session))
        return pb.GetMetaConnectionResponse(connection=views.connection(detail))

    @idempotent
    async def DisconnectMeta(
        self, request: pb.DisconnectMetaRequest, context: grpc.aio.ServicerContext
    ) -> pb.DisconnectMetaResponse:
        caller = current_caller()
        row = await oauth.disconnect(self.deps, caller)
        async with self.deps.db.unit_of_work(caller) as session:
            detail = await describe(session, row)
        return pb.DisconnectMetaResponse(connection=views.connection(detail))

    async def ListMetaPages(
        self, request: pb.ListMetaPagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMetaPagesResponse:
        found = await pages.list_pages(self.deps, current_caller())
        chunk, token = window(found, request.page_size, request.page_token, cap=_MAX_PAGE)
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
        chunk, token = window(found, request.page_size, request.page_token, cap=_MAX_PAGE)
        return pb.ListMetaLeadFormsResponse(
            forms=[views.form_view(f) for f in chunk], next_page_token=token
        )

    async def ListLeadFormMappings(
        self, request: pb.ListLeadFormMappingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListLeadFormMappingsResponse:
        found = await mapping_details.list_mappings(
            self.deps,
            current_caller(),
            page_id=request.page_id,
            ativo=request.ativo if request.HasField("ativo") else None,
            size=request.page_size,
            token=request.page_token,
        )
        return pb.ListLeadFormMappingsResponse(
            mappings=[views.mapping(d) for d in found.items],
            next_page_token=found.next_page_token,
            total_size=found.total_size,
        )

    @idempotent
    async def CreateLeadFormMapping(
        self, request: pb.CreateLeadFormMappingRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateLeadFormMappingResponse:
        caller = current_caller()
        row = await mappings.create(self.deps, caller, _input(request.mapping))
        detail = await mapping_details.detail_of(self.deps, caller, row.id)
        return pb.CreateLeadFormMappingResponse(mapping=views.mapping(detail))

    async def GetLeadFormMapping(
        self, request: pb.GetLeadFormMappingRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetLeadFormMappingResponse:
        async with self.deps.db.unit_of_work(current_caller()) as session:
            detail = await mapping_details.detail(session, request.id)
        return pb.GetLeadFormMappingResponse(mapping=views.mapping(detail))

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
        detail = await mapping_details.detail_of(self.deps, caller, row.id)
        return pb.UpdateLeadFormMappingResponse(mapping=views.mapping(detail))

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
