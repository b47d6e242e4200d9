"""Meta Ads: the tenant's OAuth connection, pages, Lead Ads forms, CAPI and Custom Audiences."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import (
    EMPTY_JSON,
    Base,
    Json,
    created_at,
    in_check,
    org_fk,
    updated_at,
    user_fk,
    uuid_pk,
)

LIVE = text("deletado_em IS NULL")
META_STATUSES = ("active", "expired", "revoked", "error")
CRM_EVENTS = ("lead", "mql", "schedule", "won", "lost")
DEFAULT_CAPI_EVENTS = text(
    """'{"lead": true, "schedule": true, "mql": true, "won": true, "lost": true}'::jsonb"""
)
DEFAULT_CAPI_EVENT_CONFIG = text("""'{"won": {"enviar_valor": true}}'::jsonb""")


class MetaConnection(Base):
    __tablename__ = "conexoes_meta"
    __table_args__ = (
        UniqueConstraint("organizacao_id"),
        CheckConstraint(in_check("status", META_STATUSES), name="status"),
        Index("idx_conexoes_meta_org", "organizacao_id", postgresql_where=LIVE),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    access_token_encrypted: Mapped[str]
    refresh_token_encrypted: Mapped[str | None]
    token_expires_at: Mapped[dt.datetime | None]
    meta_user_id: Mapped[str | None] = mapped_column(String(50))
    meta_user_name: Mapped[str | None] = mapped_column(String(255))
    meta_user_email: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20), server_default="active")
    ultimo_sync: Mapped[dt.datetime | None]
    ultimo_erro: Mapped[str | None]
    refresh_falhas: Mapped[int] = mapped_column(Integer, server_default="0")
    refresh_bloqueado_ate: Mapped[dt.datetime | None]
    # Migration 0004: what debug_token said was granted, and who connected.
    scopes_concedidos: Mapped[list[str] | None]
    conectado_por: Mapped[uuid.UUID | None] = user_fk(nullable=True)
    criado_em: Mapped[dt.datetime] = created_at()
    atualizado_em: Mapped[dt.datetime] = updated_at()
    deletado_em: Mapped[dt.datetime | None]


class MetaPage(Base):
    __tablename__ = "paginas_meta"
    __table_args__ = (
        UniqueConstraint("organizacao_id", "page_id"),
        Index("idx_paginas_meta_org", "organizacao_id"),
        # Lead webhooks name only the page: the tenant is resolved through this index.
        Index("idx_paginas_meta_page", "page_id"),
        # A page is active in one tenant at a time (migration 0013): its leads reach one tenant.
        Index(
            "uq_paginas_meta_page_active",
            "page_id",
            unique=True,
            postgresql_where=text("ativo IS NOT FALSE"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    conexao_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conexoes_meta.id", ondelete="CASCADE")
    )
    organizacao_id: Mapped[uuid.UUID]  # the spec declares no foreign key here
    page_id: Mapped[str] = mapped_column(String(50))
    page_name: Mapped[str | None] = mapped_column(String(255))
    page_access_token_encrypted: Mapped[str | None]
    leads_retrieval: Mapped[bool | None] = mapped_column(Boolean, server_default=text("false"))
    pages_manage_ads: Mapped[bool | None] = mapped_column(Boolean, server_default=text("false"))
    ativo: Mapped[bool | None] = mapped_column(Boolean, server_default=text("true"))
    criado_em: Mapped[dt.datetime] = created_at()
    atualizado_em: Mapped[dt.datetime] = updated_at()


class LeadAdsForm(Base):
    __tablename__ = "formularios_lead_ads"
    __table_args__ = (
        UniqueConstraint("organizacao_id", "form_id"),
        Index("idx_form_lead_ads_org", "organizacao_id", postgresql_where=LIVE),
        Index("idx_form_lead_ads_form", "form_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    pagina_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("paginas_meta.id", ondelete="CASCADE"))
    form_id: Mapped[str] = mapped_column(String(50))
    form_name: Mapped[str | None] = mapped_column(String(255))
    funil_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("funis.id"))
    etapa_destino_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("etapas_funil.id"))
    owner_id: Mapped[uuid.UUID | None] = user_fk(nullable=True)  # NULL = automatic distribution
    mapeamento_campos: Mapped[Json] = mapped_column(server_default=EMPTY_JSON)
    criar_oportunidade: Mapped[bool | None] = mapped_column(Boolean, server_default=text("true"))
    tags_automaticas: Mapped[list[str] | None] = mapped_column(server_default=text("'{}'::text[]"))
    notificar_owner: Mapped[bool | None] = mapped_column(Boolean, server_default=text("true"))
    total_leads_recebidos: Mapped[int | None] = mapped_column(Integer, server_default="0")
    ultimo_lead_recebido: Mapped[dt.datetime | None]
    ativo: Mapped[bool | None] = mapped_column(Boolean, server_default=text("true"))
    criado_em: Mapped[dt.datetime] = created_at()
    atualizado_em: Mapped[dt.datetime] = updated_at()
    deletado_em: Mapped[dt.datetime | None]


class ConversionsApiConfig(Base):
    __tablename__ = "config_conversions_api"
    __table_args__ = (
        UniqueConstraint("organizacao_id"),
        CheckConstraint(in_check("status", META_STATUSES), name="status"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    pixel_id: Mapped[str] = mapped_column(String(50))
    access_token_encrypted: Mapped[str]
    eventos_habilitados: Mapped[Json] = mapped_column(server_default=DEFAULT_CAPI_EVENTS)
    config_eventos: Mapped[Json | None] = mapped_column(server_default=DEFAULT_CAPI_EVENT_CONFIG)
    ativo: Mapped[bool | None] = mapped_column(Boolean, server_default=text("false"))
    ultimo_teste: Mapped[dt.datetime | None]
    ultimo_teste_sucesso: Mapped[bool | None] = mapped_column(Boolean)
    total_eventos_enviados: Mapped[int | None] = mapped_column(Integer, server_default="0")
    total_eventos_sucesso: Mapped[int | None] = mapped_column(Integer, server_default="0")
    ultimo_evento_enviado: Mapped[dt.datetime | None]
    criado_em: Mapped[dt.datetime] = created_at()
    atualizado_em: Mapped[dt.datetime] = updated_at()
    # Migration 0008: Meta's last rejection (redacted), and the token's state.
    ultimo_erro: Mapped[str | None]
    status: Mapped[str] = mapped_column(String(20), server_default="active")


class ConversionsApiLog(Base):
    __tablename__ = "log_conversions_api"
    __table_args__ = (
        CheckConstraint(in_check("status", ("sent", "failed", "pending")), name="status"),
        Index("idx_log_capi_org", "organizacao_id", text("criado_em DESC")),
        Index("idx_log_capi_status", "organizacao_id", "status"),
        Index("idx_log_capi_event", "organizacao_id", "event_name"),
        # Migration 0008: one row per real event (its retries update it).
        Index(
            "uq_log_capi_event_id",
            "organizacao_id",
            "event_id",
            unique=True,
            postgresql_where=text("NOT teste"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID]  # the spec declares no foreign key here
    config_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("config_conversions_api.id"))
    event_name: Mapped[str] = mapped_column(String(50))
    event_time: Mapped[dt.datetime]
    entidade_tipo: Mapped[str | None] = mapped_column(String(50))
    entidade_id: Mapped[uuid.UUID | None]
    payload_resumo: Mapped[Json | None]
    status: Mapped[str] = mapped_column(String(20))
    response_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None]
    # Holds Meta's fbtrace_id (DESIGN: "Meta response id in logs").
    fbrq_event_id: Mapped[str | None] = mapped_column(String(100))
    criado_em: Mapped[dt.datetime] = created_at()
    # Migration 0008: the event_id sent (Meta deduplicates on it), attempts, test sends.
    event_id: Mapped[str | None] = mapped_column(String(100))
    tentativas: Mapped[int] = mapped_column(Integer, server_default="0")
    teste: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # The event as sent to Meta (hashed user data only); cleared once Meta answered for it.
    evento_meta: Mapped[Json | None]
    # Migration 0022: when Meta answered for it (accepted or rejected); empty when never sent.
    enviado_em: Mapped[dt.datetime | None]


class CustomAudience(Base):
    __tablename__ = "custom_audiences_meta"
    __table_args__ = (
        UniqueConstraint("organizacao_id", "audience_id"),
        CheckConstraint(
            in_check("tipo_sincronizacao", ("evento", "manual")), name="tipo_sincronizacao"
        ),
        CheckConstraint(
            in_check("evento_gatilho", CRM_EVENTS, nullable=True), name="evento_gatilho"
        ),
        Index("idx_audiences_meta_org", "organizacao_id", postgresql_where=LIVE),
        # Migration 0022: created in two steps, one row per create request.
        CheckConstraint(
            "estado IN ('creating', 'ready')",
            name="estado",
        ),
        Index(
            "uq_audiences_meta_creation",
            "organizacao_id",
            "chave_criacao",
            unique=True,
            postgresql_where=text("chave_criacao IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    conexao_meta_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("conexoes_meta.id"))
    # Meta's id; empty while the audience is being created (`estado` 'creating').
    audience_id: Mapped[str | None] = mapped_column(String(50))
    audience_name: Mapped[str] = mapped_column(String(255))
    ad_account_id: Mapped[str] = mapped_column(String(50))  # act_123456789
    tipo_sincronizacao: Mapped[str] = mapped_column(String(20), server_default="evento")
    evento_gatilho: Mapped[str | None] = mapped_column(String(50))
    total_usuarios: Mapped[int | None] = mapped_column(Integer, server_default="0")
    ultimo_sync: Mapped[dt.datetime | None]
    ultimo_sync_sucesso: Mapped[bool | None] = mapped_column(Boolean)
    ativo: Mapped[bool | None] = mapped_column(Boolean, server_default=text("true"))
    criado_em: Mapped[dt.datetime] = created_at()
    atualizado_em: Mapped[dt.datetime] = updated_at()
    deletado_em: Mapped[dt.datetime | None]
    # Migration 0008: what Meta was told at creation, and the size range Meta reports.
    description: Mapped[str | None]
    customer_file_source: Mapped[str] = mapped_column(
        String(40), server_default="USER_PROVIDED_ONLY"
    )
    approximate_count_lower_bound: Mapped[int | None] = mapped_column(BigInteger)
    approximate_count_upper_bound: Mapped[int | None] = mapped_column(BigInteger)
    ultimo_erro: Mapped[str | None]
    # Migration 0022: 'creating' until Meta's id is known, then 'ready'; the create request.
    estado: Mapped[str] = mapped_column(String(20), server_default="ready")
    chave_criacao: Mapped[str | None]


class CustomAudienceMember(Base):
    """`custom_audience_membros`, plus `organizacao_id` (absent in the spec) for RLS."""

    __tablename__ = "custom_audience_membros"
    __table_args__ = (
        UniqueConstraint("audience_id", "contato_id"),
        Index("idx_audience_membros_audience", "audience_id"),
        Index("idx_audience_membros_contato", "contato_id"),
        Index("idx_audience_membros_sync", "audience_id", "sincronizado"),
        Index("idx_audience_membros_org", "organizacao_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    audience_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("custom_audiences_meta.id", ondelete="CASCADE")
    )
    contato_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contatos.id"))
    email_hash: Mapped[str | None] = mapped_column(String(64))
    phone_hash: Mapped[str | None] = mapped_column(String(64))
    sincronizado: Mapped[bool | None] = mapped_column(Boolean, server_default=text("false"))
    sincronizado_em: Mapped[dt.datetime | None]
    erro_sincronizacao: Mapped[str | None]
    criado_em: Mapped[dt.datetime] = created_at()


LEAD_STATUSES = ("processado", "sem_mapeamento", "inativo")


class MetaLeadReceived(Base):
    """`leads_meta_recebidos` (migration 0004): every Lead Ads lead this tenant took in, once.

    Unique per tenant on Meta's leadgen id, so a webhook redelivery, a backfill and a job run
    twice after a lost lease all land on the same row. Unmapped or inactive forms' leads are
    counted here without a contact; mapped ones link the contact and opportunity they made.
    """

    __tablename__ = "leads_meta_recebidos"
    __table_args__ = (
        UniqueConstraint("organizacao_id", "leadgen_id"),
        CheckConstraint(in_check("status", LEAD_STATUSES), name="status"),
        Index("idx_leads_meta_form", "organizacao_id", "form_id", text("criado_em DESC")),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    leadgen_id: Mapped[str] = mapped_column(String(50))
    page_id: Mapped[str] = mapped_column(String(50))
    form_id: Mapped[str] = mapped_column(String(50))
    formulario_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("formularios_lead_ads.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(20))
    contato_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contatos.id"))
    oportunidade_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("oportunidades.id"))
    owner_id: Mapped[uuid.UUID | None] = user_fk(nullable=True)
    origem: Mapped[str] = mapped_column(String(20), server_default="webhook")
    lead_criado_em: Mapped[dt.datetime | None]
    criado_em: Mapped[dt.datetime] = created_at()


PIPELINE_EVENTS = CRM_EVENTS


class PipelineEventRecord(Base):
    """`eventos_pipeline` (migration 0008): each pipeline event a CRM service published, once
    per producer request id; audiences "sync now" read which contacts had which event here."""

    __tablename__ = "eventos_pipeline"
    __table_args__ = (
        UniqueConstraint("organizacao_id", "request_id"),
        CheckConstraint(in_check("evento", PIPELINE_EVENTS), name="evento"),
        Index("idx_eventos_pipeline_evento", "organizacao_id", "evento"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    request_id: Mapped[str] = mapped_column(String(100))
    evento: Mapped[str] = mapped_column(String(20))
    contato_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contatos.id"))
    oportunidade_id: Mapped[uuid.UUID | None]
    meeting_id: Mapped[uuid.UUID | None]
    ocorrido_em: Mapped[dt.datetime]
    capi_event_name: Mapped[str] = mapped_column(String(50))
    resumo: Mapped[Json | None]
    criado_em: Mapped[dt.datetime] = created_at()
