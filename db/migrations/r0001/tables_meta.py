"""Revision 0001, tables: Meta Ads: connection, pages, Lead Ads forms, CAPI, Custom Audiences.

Frozen at revision 0001: later schema changes go in new revisions, never here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

TABLES: tuple[str, ...] = (
    "conexoes_meta",
    "config_conversions_api",
    "custom_audiences_meta",
    "log_conversions_api",
    "paginas_meta",
    "custom_audience_membros",
    "formularios_lead_ads",
)


def create() -> None:
    op.create_table(
        "conexoes_meta",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("access_token_encrypted", sa.Text(), nullable=False),
        sa.Column("refresh_token_encrypted", sa.Text(), nullable=True),
        sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("meta_user_id", sa.String(length=50), nullable=True),
        sa.Column("meta_user_name", sa.String(length=255), nullable=True),
        sa.Column("meta_user_email", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=20), server_default="active", nullable=False),
        sa.Column("ultimo_sync", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ultimo_erro", sa.Text(), nullable=True),
        sa.Column("refresh_falhas", sa.Integer(), server_default="0", nullable=False),
        sa.Column("refresh_bloqueado_ate", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "atualizado_em",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("deletado_em", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'expired', 'revoked', 'error')",
            name=op.f("conexoes_meta_status_check"),
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"],
            ["organizacoes_saas.id"],
            name=op.f("conexoes_meta_organizacao_id_fkey"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("conexoes_meta_pkey")),
        sa.UniqueConstraint("organizacao_id", name=op.f("conexoes_meta_organizacao_id_key")),
    )
    op.create_index(
        "idx_conexoes_meta_org",
        "conexoes_meta",
        ["organizacao_id"],
        unique=False,
        postgresql_where=sa.text("deletado_em IS NULL"),
    )
    op.create_table(
        "config_conversions_api",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("pixel_id", sa.String(length=50), nullable=False),
        sa.Column("access_token_encrypted", sa.Text(), nullable=False),
        sa.Column(
            "eventos_habilitados",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text(
                '\'{"lead": true, "schedule": true, "mql": true, "won": true, "lost": true}\''
                "::jsonb"
            ),
            nullable=False,
        ),
        sa.Column(
            "config_eventos",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text('\'{"won": {"enviar_valor": true}}\'::jsonb'),
            nullable=True,
        ),
        sa.Column("ativo", sa.Boolean(), server_default=sa.text("false"), nullable=True),
        sa.Column("ultimo_teste", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ultimo_teste_sucesso", sa.Boolean(), nullable=True),
        sa.Column("total_eventos_enviados", sa.Integer(), server_default="0", nullable=True),
        sa.Column("total_eventos_sucesso", sa.Integer(), server_default="0", nullable=True),
        sa.Column("ultimo_evento_enviado", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "atualizado_em",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"],
            ["organizacoes_saas.id"],
            name=op.f("config_conversions_api_organizacao_id_fkey"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("config_conversions_api_pkey")),
        sa.UniqueConstraint(
            "organizacao_id", name=op.f("config_conversions_api_organizacao_id_key")
        ),
    )
    op.create_table(
        "custom_audiences_meta",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("conexao_meta_id", sa.Uuid(), nullable=True),
        sa.Column("audience_id", sa.String(length=50), nullable=False),
        sa.Column("audience_name", sa.String(length=255), nullable=False),
        sa.Column("ad_account_id", sa.String(length=50), nullable=False),
        sa.Column(
            "tipo_sincronizacao", sa.String(length=20), server_default="evento", nullable=False
        ),
        sa.Column("evento_gatilho", sa.String(length=50), nullable=True),
        sa.Column("total_usuarios", sa.Integer(), server_default="0", nullable=True),
        sa.Column("ultimo_sync", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ultimo_sync_sucesso", sa.Boolean(), nullable=True),
        sa.Column("ativo", sa.Boolean(), server_default=sa.text("true"), nullable=True),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "atualizado_em",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("deletado_em", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "evento_gatilho IS NULL OR "
            "evento_gatilho IN ('lead', 'mql', 'schedule', 'won', 'lost')",
            name=op.f("custom_audiences_meta_evento_gatilho_check"),
        ),
        sa.CheckConstraint(
            "tipo_sincronizacao IN ('evento', 'manual')",
            name=op.f("custom_audiences_meta_tipo_sincronizacao_check"),
        ),
        sa.ForeignKeyConstraint(
            ["conexao_meta_id"],
            ["conexoes_meta.id"],
            name=op.f("custom_audiences_meta_conexao_meta_id_fkey"),
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"],
            ["organizacoes_saas.id"],
            name=op.f("custom_audiences_meta_organizacao_id_fkey"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("custom_audiences_meta_pkey")),
        sa.UniqueConstraint(
            "organizacao_id",
            "audience_id",
            name=op.f("custom_audiences_meta_organizacao_id_audience_id_key"),
        ),
    )
    op.create_index(
        "idx_audiences_meta_org",
        "custom_audiences_meta",
        ["organizacao_id"],
        unique=False,
        postgresql_where=sa.text("deletado_em IS NULL"),
    )
    op.create_table(
        "log_conversions_api",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("config_id", sa.Uuid(), nullable=True),
        sa.Column("event_name", sa.String(length=50), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entidade_tipo", sa.String(length=50), nullable=True),
        sa.Column("entidade_id", sa.Uuid(), nullable=True),
        sa.Column("payload_resumo", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("fbrq_event_id", sa.String(length=100), nullable=True),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint(
            "status IN ('sent', 'failed', 'pending')", name=op.f("log_conversions_api_status_check")
        ),
        sa.ForeignKeyConstraint(
            ["config_id"],
            ["config_conversions_api.id"],
            name=op.f("log_conversions_api_config_id_fkey"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("log_conversions_api_pkey")),
    )
    op.create_index(
        "idx_log_capi_event", "log_conversions_api", ["organizacao_id", "event_name"], unique=False
    )
    op.create_index(
        "idx_log_capi_org",
        "log_conversions_api",
        ["organizacao_id", sa.literal_column("criado_em DESC")],
        unique=False,
    )
    op.create_index(
        "idx_log_capi_status", "log_conversions_api", ["organizacao_id", "status"], unique=False
    )
    op.create_table(
        "paginas_meta",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("conexao_id", sa.Uuid(), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("page_id", sa.String(length=50), nullable=False),
        sa.Column("page_name", sa.String(length=255), nullable=True),
        sa.Column("page_access_token_encrypted", sa.Text(), nullable=True),
        sa.Column("leads_retrieval", sa.Boolean(), server_default=sa.text("false"), nullable=True),
        sa.Column("pages_manage_ads", sa.Boolean(), server_default=sa.text("false"), nullable=True),
        sa.Column("ativo", sa.Boolean(), server_default=sa.text("true"), nullable=True),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "atualizado_em",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["conexao_id"],
            ["conexoes_meta.id"],
            name=op.f("paginas_meta_conexao_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("paginas_meta_pkey")),
        sa.UniqueConstraint(
            "organizacao_id", "page_id", name=op.f("paginas_meta_organizacao_id_page_id_key")
        ),
    )
    op.create_index("idx_paginas_meta_org", "paginas_meta", ["organizacao_id"], unique=False)
    op.create_index("idx_paginas_meta_page", "paginas_meta", ["page_id"], unique=False)
    op.create_table(
        "custom_audience_membros",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("audience_id", sa.Uuid(), nullable=False),
        sa.Column("contato_id", sa.Uuid(), nullable=False),
        sa.Column("email_hash", sa.String(length=64), nullable=True),
        sa.Column("phone_hash", sa.String(length=64), nullable=True),
        sa.Column("sincronizado", sa.Boolean(), server_default=sa.text("false"), nullable=True),
        sa.Column("sincronizado_em", sa.DateTime(timezone=True), nullable=True),
        sa.Column("erro_sincronizacao", sa.Text(), nullable=True),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["audience_id"],
            ["custom_audiences_meta.id"],
            name=op.f("custom_audience_membros_audience_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contato_id"], ["contatos.id"], name=op.f("custom_audience_membros_contato_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"],
            ["organizacoes_saas.id"],
            name=op.f("custom_audience_membros_organizacao_id_fkey"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("custom_audience_membros_pkey")),
        sa.UniqueConstraint(
            "audience_id",
            "contato_id",
            name=op.f("custom_audience_membros_audience_id_contato_id_key"),
        ),
    )
    op.create_index(
        "idx_audience_membros_audience", "custom_audience_membros", ["audience_id"], unique=False
    )
    op.create_index(
        "idx_audience_membros_contato", "custom_audience_membros", ["contato_id"], unique=False
    )
    op.create_index(
        "idx_audience_membros_org", "custom_audience_membros", ["organizacao_id"], unique=False
    )
    op.create_index(
        "idx_audience_membros_sync",
        "custom_audience_membros",
        ["audience_id", "sincronizado"],
        unique=False,
    )
    op.create_table(
        "formularios_lead_ads",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("pagina_id", sa.Uuid(), nullable=False),
        sa.Column("form_id", sa.String(length=50), nullable=False),
        sa.Column("form_name", sa.String(length=255), nullable=True),
        sa.Column("funil_id", sa.Uuid(), nullable=True),
        sa.Column("etapa_destino_id", sa.Uuid(), nullable=True),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column(
            "mapeamento_campos",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "criar_oportunidade", sa.Boolean(), server_default=sa.text("true"), nullable=True
        ),
        sa.Column(
            "tags_automaticas",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=True,
        ),
        sa.Column("notificar_owner", sa.Boolean(), server_default=sa.text("true"), nullable=True),
        sa.Column("total_leads_recebidos", sa.Integer(), server_default="0", nullable=True),
        sa.Column("ultimo_lead_recebido", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ativo", sa.Boolean(), server_default=sa.text("true"), nullable=True),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "atualizado_em",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("deletado_em", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["etapa_destino_id"],
            ["etapas_funil.id"],
            name=op.f("formularios_lead_ads_etapa_destino_id_fkey"),
        ),
        sa.ForeignKeyConstraint(
            ["funil_id"], ["funis.id"], name=op.f("formularios_lead_ads_funil_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"],
            ["organizacoes_saas.id"],
            name=op.f("formularios_lead_ads_organizacao_id_fkey"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["usuarios.id"], name=op.f("formularios_lead_ads_owner_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["pagina_id"],
            ["paginas_meta.id"],
            name=op.f("formularios_lead_ads_pagina_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("formularios_lead_ads_pkey")),
        sa.UniqueConstraint(
            "organizacao_id",
            "form_id",
            name=op.f("formularios_lead_ads_organizacao_id_form_id_key"),
        ),
    )
    op.create_index("idx_form_lead_ads_form", "formularios_lead_ads", ["form_id"], unique=False)
    op.create_index(
        "idx_form_lead_ads_org",
        "formularios_lead_ads",
        ["organizacao_id"],
        unique=False,
        postgresql_where=sa.text("deletado_em IS NULL"),
    )
