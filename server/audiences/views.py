"""Audience rows as protos (pure functions)."""

from __future__ import annotations

from renove.conexoes.v1 import audiences_service_pb2 as pb

from db.models import CustomAudience, CustomAudienceMember
from server.protoconv import timestamp
from server.providers.meta_audiences import AdAccount

SYNC_TYPES = {"evento": pb.AUDIENCE_SYNC_TYPE_EVENTO, "manual": pb.AUDIENCE_SYNC_TYPE_MANUAL}
SYNC_WORDS = {v: k for k, v in SYNC_TYPES.items()}
TRIGGERS = {
    "lead": pb.AUDIENCE_TRIGGER_LEAD,
    "mql": pb.AUDIENCE_TRIGGER_MQL,
    "schedule": pb.AUDIENCE_TRIGGER_SCHEDULE,
    "won": pb.AUDIENCE_TRIGGER_WON,
    "lost": pb.AUDIENCE_TRIGGER_LOST,
}
TRIGGER_WORDS = {v: k for k, v in TRIGGERS.items()}


def ad_account(a: AdAccount) -> pb.AdAccount:
    return pb.AdAccount(
        ad_account_id=a.id,
        name=a.name,
        currency=a.currency,
        account_status=a.account_status,
        custom_audience_tos_accepted=a.tos_accepted,
    )


def audience(row: CustomAudience, pending: int = 0) -> pb.Audience:
    out = pb.Audience(
        id=str(row.id),
        audience_id=row.audience_id or "",
        audience_name=row.audience_name,
        description=row.description or "",
        ad_account_id=row.ad_account_id,
        conexao_meta_id=str(row.conexao_meta_id) if row.conexao_meta_id else "",
        tipo_sincronizacao=SYNC_TYPES.get(
            row.tipo_sincronizacao, pb.AUDIENCE_SYNC_TYPE_UNSPECIFIED
        ),
        evento_gatilho=TRIGGERS.get(row.evento_gatilho or "", pb.AUDIENCE_TRIGGER_UNSPECIFIED),
        total_usuarios=row.total_usuarios or 0,
        pendentes_sincronizacao=pending,
        ultimo_sync=timestamp(row.ultimo_sync),
        ultimo_erro=row.ultimo_erro or "",
        ativo=row.ativo is not False,
        criado_em=timestamp(row.criado_em),
        atualizado_em=timestamp(row.atualizado_em),
        customer_file_source=row.customer_file_source,
        # Meta shows no size below its threshold: too small to use until it does.
        tamanho_insuficiente=row.ultimo_sync is not None
        and row.approximate_count_lower_bound is None,
    )
    if row.ultimo_sync_sucesso is not None:
        out.ultimo_sync_sucesso = row.ultimo_sync_sucesso
    if row.approximate_count_lower_bound is not None:
        out.approximate_count_lower_bound = row.approximate_count_lower_bound
    if row.approximate_count_upper_bound is not None:
        out.approximate_count_upper_bound = row.approximate_count_upper_bound
    return out


def member(row: CustomAudienceMember, nome: str | None) -> pb.AudienceMember:
    return pb.AudienceMember(
        id=str(row.id),
        contato_id=str(row.contato_id),
        contato_nome=nome or "",
        email_hash=row.email_hash or "",
        phone_hash=row.phone_hash or "",
        sincronizado=row.sincronizado is True,
        sincronizado_em=timestamp(row.sincronizado_em),
        erro_sincronizacao=row.erro_sincronizacao or "",
        criado_em=timestamp(row.criado_em),
    )
