"""Domain rows and Graph objects -> protobuf messages (no token ever leaves). Pure: what a view
shows is loaded beforehand, in bulk (connection.describe, mapping_details)."""

from __future__ import annotations

from renove.conexoes.v1 import meta_leads_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2

from db.models import MetaPage
from server.meta_leads.connection import ConnectionDetail
from server.meta_leads.forms import FormView
from server.meta_leads.mapping_details import MappingDetail
from server.meta_leads.pages import PageView
from server.protoconv import timestamp

_STATUS = {
    "active": resources_pb2.CONNECTION_STATUS_ACTIVE,
    "expired": resources_pb2.CONNECTION_STATUS_EXPIRED,
    "revoked": resources_pb2.CONNECTION_STATUS_REVOKED,
    "error": resources_pb2.CONNECTION_STATUS_ERROR,
}
_FORM_STATUS = {
    "ACTIVE": pb.LEAD_FORM_STATUS_ACTIVE,
    "ARCHIVED": pb.LEAD_FORM_STATUS_ARCHIVED,
    "DELETED": pb.LEAD_FORM_STATUS_DELETED,
    "DRAFT": pb.LEAD_FORM_STATUS_DRAFT,
}


def page_row(row: MetaPage) -> pb.MetaPage:
    return pb.MetaPage(
        id=str(row.id),
        page_id=row.page_id,
        page_name=row.page_name or "",
        leads_retrieval=bool(row.leads_retrieval),
        pages_manage_ads=bool(row.pages_manage_ads),
        selecionada=bool(row.ativo),
        webhook_subscribed=bool(row.ativo and row.page_access_token_encrypted),
        ativo=bool(row.ativo),
        criado_em=timestamp(row.criado_em),
        atualizado_em=timestamp(row.atualizado_em),
    )


def page_view(view: PageView) -> pb.MetaPage:
    out = page_row(view.row) if view.row is not None else pb.MetaPage(page_id=view.account.id)
    out.page_name = view.account.name
    out.category = view.account.category
    out.leads_retrieval = view.leads_retrieval
    out.pages_manage_ads = view.pages_manage_ads
    return out


def form_view(view: FormView) -> pb.MetaLeadForm:
    form = view.form
    return pb.MetaLeadForm(
        form_id=form.id,
        form_name=form.name,
        page_id=view.page_id,
        status=_FORM_STATUS.get(form.status, pb.LEAD_FORM_STATUS_UNSPECIFIED),
        leads_count=form.leads_count,
        locale=form.locale,
        questions=[
            pb.LeadFormQuestion(key=q.key, label=q.label, type=q.type) for q in form.questions
        ],
        created_time=timestamp(form.created_time),
        mapeado=view.mapping_id is not None,
        mapping_id=view.mapping_id or "",
    )


def connection(detail: ConnectionDetail) -> pb.MetaConnection:
    row = detail.row
    if row is None or row.deletado_em is not None:
        return pb.MetaConnection(
            id=str(row.id) if row else "", status=resources_pb2.CONNECTION_STATUS_DISCONNECTED
        )
    out = pb.MetaConnection(
        id=str(row.id),
        status=_STATUS.get(row.status, resources_pb2.CONNECTION_STATUS_ERROR),
        meta_user_id=row.meta_user_id or "",
        meta_user_name=row.meta_user_name or "",
        meta_user_email=row.meta_user_email or "",
        token_expires_at=timestamp(row.token_expires_at),
        scopes=list(row.scopes_concedidos or []),
        total_formularios_ativos=detail.active_forms,
        ultimo_sync=timestamp(row.ultimo_sync),
        ultimo_erro=row.ultimo_erro or "",
        criado_em=timestamp(row.criado_em),
        atualizado_em=timestamp(row.atualizado_em),
    )
    if detail.page is not None:
        out.pagina_selecionada.CopyFrom(page_row(detail.page))
    if row.conectado_por is not None:
        user = detail.connected_by
        out.conectado_por.CopyFrom(
            resources_pb2.UserRef(
                usuario_id=str(row.conectado_por),
                nome=user.nome if user else "",
                email=(user.email or "") if user else "",
            )
        )
    return out


def mapping(detail: MappingDetail) -> pb.LeadFormMapping:
    row = detail.row
    return pb.LeadFormMapping(
        id=str(row.id),
        page_id=detail.page_id,
        pagina_id=str(row.pagina_id),
        page_name=detail.page_name,
        form_id=row.form_id,
        form_name=row.form_name or "",
        funil_id=str(row.funil_id or ""),
        funil_nome=detail.funil_nome,
        etapa_destino_id=str(row.etapa_destino_id or ""),
        etapa_destino_nome=detail.etapa_nome,
        owner_id=str(row.owner_id or ""),
        owner_nome=detail.owner_nome,
        mapeamento_campos=dict(row.mapeamento_campos or {}),
        criar_oportunidade=row.criar_oportunidade is not False,
        tags_automaticas=list(row.tags_automaticas or []),
        notificar_owner=row.notificar_owner is not False,
        ativo=row.ativo is not False,
        total_leads_recebidos=int(row.total_leads_recebidos or 0),
        ultimo_lead_recebido=timestamp(row.ultimo_lead_recebido),
        criado_em=timestamp(row.criado_em),
        atualizado_em=timestamp(row.atualizado_em),
    )
