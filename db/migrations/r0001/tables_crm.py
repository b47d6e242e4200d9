"""Revision 0001, tables: the CRM tables this service borrows (minimal versions).

Frozen at revision 0001: later schema changes go in new revisions, never here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

TABLES: tuple[str, ...] = (
    "organizacoes_saas",
    "configuracoes_tenant",
    "funis",
    "usuarios",
    "contatos",
    "etapas_funil",
    "conversas",
    "oportunidades",
    "meetings",
)


def create() -> None:
    op.create_table(
        "organizacoes_saas",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("nome", sa.String(length=255), nullable=False),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("organizacoes_saas_pkey")),
    )
    op.create_table(
        "configuracoes_tenant",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column(
            "configuracoes_extra",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
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
            name=op.f("configuracoes_tenant_organizacao_id_fkey"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("configuracoes_tenant_pkey")),
        sa.UniqueConstraint("organizacao_id", name=op.f("configuracoes_tenant_organizacao_id_key")),
    )
    op.create_table(
        "funis",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("nome", sa.String(length=255), nullable=False),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"], ["organizacoes_saas.id"], name=op.f("funis_organizacao_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("funis_pkey")),
    )
    op.create_index("idx_funis_org", "funis", ["organizacao_id"], unique=False)
    op.create_table(
        "usuarios",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("nome", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("role", sa.String(length=20), server_default="member", nullable=False),
        sa.Column("ativo", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "permissoes_conexoes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text(
                '\'{"meta_lead_ads": false, "instagram_direct": false}\'::jsonb'
            ),
            nullable=False,
        ),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint(
            "role IN ('super_admin', 'admin', 'member')", name=op.f("usuarios_role_check")
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"], ["organizacoes_saas.id"], name=op.f("usuarios_organizacao_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("usuarios_pkey")),
    )
    op.create_index("idx_usuarios_org", "usuarios", ["organizacao_id"], unique=False)
    op.create_table(
        "contatos",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("nome", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("telefone", sa.String(length=20), nullable=True),
        sa.Column("empresa", sa.String(length=255), nullable=True),
        sa.Column("cargo", sa.String(length=255), nullable=True),
        sa.Column("cidade", sa.String(length=255), nullable=True),
        sa.Column(
            "campos_customizados",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "tags",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column("origem", sa.String(length=50), nullable=True),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("instagram_igsid", sa.String(length=64), nullable=True),
        sa.Column("instagram_username", sa.String(length=255), nullable=True),
        sa.Column("instagram_window_expires_at", sa.DateTime(timezone=True), nullable=True),
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
            "telefone IS NULL OR telefone ~ '^\\+[1-9][0-9]{6,14}$'",
            name=op.f("contatos_telefone_e164_check"),
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"], ["organizacoes_saas.id"], name=op.f("contatos_organizacao_id_fkey")
        ),
        sa.ForeignKeyConstraint(["owner_id"], ["usuarios.id"], name=op.f("contatos_owner_id_fkey")),
        sa.PrimaryKeyConstraint("id", name=op.f("contatos_pkey")),
    )
    op.create_index("idx_contatos_email", "contatos", ["organizacao_id", "email"], unique=False)
    op.create_index(
        "idx_contatos_org",
        "contatos",
        ["organizacao_id"],
        unique=False,
        postgresql_where=sa.text("deletado_em IS NULL"),
    )
    op.create_index(
        "uq_contatos_instagram_igsid",
        "contatos",
        ["organizacao_id", "instagram_igsid"],
        unique=True,
        postgresql_where=sa.text("instagram_igsid IS NOT NULL AND deletado_em IS NULL"),
    )
    op.create_index(
        "uq_contatos_telefone",
        "contatos",
        ["organizacao_id", "telefone"],
        unique=True,
        postgresql_where=sa.text("telefone IS NOT NULL AND deletado_em IS NULL"),
    )
    op.create_table(
        "etapas_funil",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("funil_id", sa.Uuid(), nullable=False),
        sa.Column("nome", sa.String(length=255), nullable=False),
        sa.Column("ordem", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["funil_id"], ["funis.id"], name=op.f("etapas_funil_funil_id_fkey"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"],
            ["organizacoes_saas.id"],
            name=op.f("etapas_funil_organizacao_id_fkey"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("etapas_funil_pkey")),
    )
    op.create_index("idx_etapas_funil_funil", "etapas_funil", ["funil_id", "ordem"], unique=False)
    op.create_index("idx_etapas_funil_org", "etapas_funil", ["organizacao_id"], unique=False)
    op.create_table(
        "conversas",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("canal", sa.String(length=20), nullable=False),
        sa.Column("contato_id", sa.Uuid(), nullable=True),
        sa.Column("usuario_id", sa.Uuid(), nullable=True),
        sa.Column("direcao", sa.String(length=10), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("conteudo", sa.Text(), nullable=True),
        sa.Column("tipo", sa.String(length=20), server_default="text", nullable=False),
        sa.Column("status", sa.String(length=20), nullable=True),
        sa.Column("ack", sa.Integer(), nullable=True),
        sa.Column("enviado_em", sa.DateTime(timezone=True), nullable=True),
        sa.Column("instagram_window_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "atualizado_em",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "canal IN ('whatsapp', 'instagram')", name=op.f("conversas_canal_check")
        ),
        sa.CheckConstraint(
            "direcao IN ('inbound', 'outbound')", name=op.f("conversas_direcao_check")
        ),
        sa.ForeignKeyConstraint(
            ["contato_id"], ["contatos.id"], name=op.f("conversas_contato_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"], ["organizacoes_saas.id"], name=op.f("conversas_organizacao_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["usuario_id"], ["usuarios.id"], name=op.f("conversas_usuario_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("conversas_pkey")),
    )
    op.create_index(
        "idx_conversas_contato",
        "conversas",
        ["organizacao_id", "contato_id", "criado_em"],
        unique=False,
    )
    op.create_index(
        "idx_conversas_usuario",
        "conversas",
        ["organizacao_id", "usuario_id", "criado_em"],
        unique=False,
    )
    op.create_index(
        "uq_conversas_external_id",
        "conversas",
        ["organizacao_id", "canal", "external_id"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.create_table(
        "oportunidades",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("contato_id", sa.Uuid(), nullable=False),
        sa.Column("funil_id", sa.Uuid(), nullable=True),
        sa.Column("etapa_id", sa.Uuid(), nullable=True),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("titulo", sa.String(length=255), nullable=True),
        sa.Column("valor", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("status", sa.String(length=20), server_default="open", nullable=False),
        sa.Column("origem", sa.String(length=50), nullable=True),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "atualizado_em",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('open', 'won', 'lost')", name=op.f("oportunidades_status_check")
        ),
        sa.ForeignKeyConstraint(
            ["contato_id"], ["contatos.id"], name=op.f("oportunidades_contato_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["etapa_id"], ["etapas_funil.id"], name=op.f("oportunidades_etapa_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["funil_id"], ["funis.id"], name=op.f("oportunidades_funil_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"],
            ["organizacoes_saas.id"],
            name=op.f("oportunidades_organizacao_id_fkey"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["usuarios.id"], name=op.f("oportunidades_owner_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("oportunidades_pkey")),
    )
    op.create_index("idx_oportunidades_contato", "oportunidades", ["contato_id"], unique=False)
    op.create_index(
        "idx_oportunidades_org", "oportunidades", ["organizacao_id", "status"], unique=False
    )
    op.create_table(
        "meetings",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("usuario_id", sa.Uuid(), nullable=True),
        sa.Column("contato_id", sa.Uuid(), nullable=True),
        sa.Column("oportunidade_id", sa.Uuid(), nullable=True),
        sa.Column("titulo", sa.String(length=255), nullable=False),
        sa.Column("descricao", sa.Text(), nullable=True),
        sa.Column("inicio", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fim", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="scheduled", nullable=False),
        sa.Column("google_event_id", sa.Text(), nullable=True),
        sa.Column("google_meet_link", sa.Text(), nullable=True),
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
            ["contato_id"], ["contatos.id"], name=op.f("meetings_contato_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["oportunidade_id"], ["oportunidades.id"], name=op.f("meetings_oportunidade_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"], ["organizacoes_saas.id"], name=op.f("meetings_organizacao_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["usuario_id"], ["usuarios.id"], name=op.f("meetings_usuario_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("meetings_pkey")),
    )
    op.create_index("idx_meetings_org", "meetings", ["organizacao_id", "inicio"], unique=False)
    op.create_index(
        "uq_meetings_google_event",
        "meetings",
        ["organizacao_id", "google_event_id"],
        unique=True,
        postgresql_where=sa.text("google_event_id IS NOT NULL"),
    )
