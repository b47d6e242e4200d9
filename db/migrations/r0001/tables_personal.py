"""Revision 0001, tables: personal connections (WhatsApp, Google, e-mail, Instagram).

Frozen at revision 0001: later schema changes go in new revisions, never here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

TABLES: tuple[str, ...] = (
    "conexoes_email",
    "conexoes_google",
    "conexoes_instagram",
    "sessoes_whatsapp",
)


def create() -> None:
    op.create_table(
        "conexoes_email",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("usuario_id", sa.Uuid(), nullable=False),
        sa.Column("tipo", sa.String(length=20), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("nome_remetente", sa.String(length=255), nullable=True),
        sa.Column("google_user_id", sa.String(length=50), nullable=True),
        sa.Column("access_token_encrypted", sa.Text(), nullable=True),
        sa.Column("refresh_token_encrypted", sa.Text(), nullable=True),
        sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("smtp_host", sa.String(length=255), nullable=True),
        sa.Column("smtp_port", sa.Integer(), server_default="587", nullable=True),
        sa.Column("smtp_user", sa.String(length=255), nullable=True),
        sa.Column("smtp_pass_encrypted", sa.Text(), nullable=True),
        sa.Column("smtp_tls", sa.Boolean(), server_default=sa.text("true"), nullable=True),
        sa.Column(
            "smtp_auto_detected", sa.Boolean(), server_default=sa.text("false"), nullable=True
        ),
        sa.Column("status", sa.String(length=20), server_default="active", nullable=False),
        sa.Column("ultimo_envio", sa.DateTime(timezone=True), nullable=True),
        sa.Column("total_emails_enviados", sa.Integer(), server_default="0", nullable=True),
        sa.Column("ultimo_erro", sa.Text(), nullable=True),
        sa.Column("refresh_falhas", sa.Integer(), server_default="0", nullable=False),
        sa.Column("refresh_bloqueado_ate", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "conectado_em",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=True,
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
        sa.Column("deletado_em", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'expired', 'revoked', 'error', 'testing')",
            name=op.f("conexoes_email_status_check"),
        ),
        sa.CheckConstraint(
            "tipo IN ('gmail_oauth', 'smtp_manual')", name=op.f("conexoes_email_tipo_check")
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"],
            ["organizacoes_saas.id"],
            name=op.f("conexoes_email_organizacao_id_fkey"),
        ),
        sa.ForeignKeyConstraint(
            ["usuario_id"], ["usuarios.id"], name=op.f("conexoes_email_usuario_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("conexoes_email_pkey")),
        sa.UniqueConstraint(
            "organizacao_id",
            "usuario_id",
            name=op.f("conexoes_email_organizacao_id_usuario_id_key"),
        ),
    )
    op.create_index(
        "idx_conexoes_email_org",
        "conexoes_email",
        ["organizacao_id"],
        unique=False,
        postgresql_where=sa.text("deletado_em IS NULL"),
    )
    op.create_index(
        "idx_conexoes_email_status", "conexoes_email", ["organizacao_id", "status"], unique=False
    )
    op.create_index(
        "idx_conexoes_email_user",
        "conexoes_email",
        ["usuario_id"],
        unique=False,
        postgresql_where=sa.text("deletado_em IS NULL"),
    )
    op.create_table(
        "conexoes_google",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("usuario_id", sa.Uuid(), nullable=False),
        sa.Column("access_token_encrypted", sa.Text(), nullable=False),
        sa.Column("refresh_token_encrypted", sa.Text(), nullable=True),
        sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("google_user_id", sa.String(length=50), nullable=True),
        sa.Column("google_user_email", sa.String(length=255), nullable=True),
        sa.Column("google_user_name", sa.String(length=255), nullable=True),
        sa.Column("calendar_id", sa.String(length=255), nullable=True),
        sa.Column("calendar_name", sa.String(length=255), nullable=True),
        sa.Column("criar_google_meet", sa.Boolean(), server_default=sa.text("true"), nullable=True),
        sa.Column(
            "sincronizar_eventos", sa.Boolean(), server_default=sa.text("true"), nullable=True
        ),
        sa.Column("status", sa.String(length=20), server_default="active", nullable=False),
        sa.Column("ultimo_sync", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ultimo_erro", sa.Text(), nullable=True),
        sa.Column("channel_id", sa.String(length=255), nullable=True),
        sa.Column("channel_resource_id", sa.String(length=255), nullable=True),
        sa.Column("channel_token_encrypted", sa.Text(), nullable=True),
        sa.Column("channel_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sync_token", sa.Text(), nullable=True),
        sa.Column("refresh_falhas", sa.Integer(), server_default="0", nullable=False),
        sa.Column("refresh_bloqueado_ate", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "conectado_em",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=True,
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
        sa.Column("deletado_em", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'expired', 'revoked', 'error')",
            name=op.f("conexoes_google_status_check"),
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"],
            ["organizacoes_saas.id"],
            name=op.f("conexoes_google_organizacao_id_fkey"),
        ),
        sa.ForeignKeyConstraint(
            ["usuario_id"], ["usuarios.id"], name=op.f("conexoes_google_usuario_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("conexoes_google_pkey")),
        sa.UniqueConstraint(
            "organizacao_id",
            "usuario_id",
            name=op.f("conexoes_google_organizacao_id_usuario_id_key"),
        ),
    )
    op.create_index(
        "idx_conexoes_google_org",
        "conexoes_google",
        ["organizacao_id"],
        unique=False,
        postgresql_where=sa.text("deletado_em IS NULL"),
    )
    op.create_index(
        "idx_conexoes_google_status", "conexoes_google", ["organizacao_id", "status"], unique=False
    )
    op.create_index(
        "idx_conexoes_google_user",
        "conexoes_google",
        ["usuario_id"],
        unique=False,
        postgresql_where=sa.text("deletado_em IS NULL"),
    )
    op.create_index(
        "uq_conexoes_google_channel",
        "conexoes_google",
        ["channel_id"],
        unique=True,
        postgresql_where=sa.text("channel_id IS NOT NULL"),
    )
    op.create_table(
        "conexoes_instagram",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("usuario_id", sa.Uuid(), nullable=False),
        sa.Column("instagram_user_id", sa.String(length=50), nullable=False),
        sa.Column("instagram_username", sa.String(length=255), nullable=True),
        sa.Column("instagram_name", sa.String(length=255), nullable=True),
        sa.Column("profile_picture_url", sa.Text(), nullable=True),
        sa.Column("account_type", sa.String(length=20), nullable=True),
        sa.Column("access_token_encrypted", sa.Text(), nullable=False),
        sa.Column("token_type", sa.String(length=20), server_default="long_lived", nullable=True),
        sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "permissions",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text(
                "ARRAY['instagram_business_basic', 'instagram_business_manage_messages']"
            ),
            nullable=True,
        ),
        sa.Column(
            "webhook_subscribed", sa.Boolean(), server_default=sa.text("false"), nullable=True
        ),
        sa.Column("total_mensagens_recebidas", sa.Integer(), server_default="0", nullable=True),
        sa.Column("total_mensagens_enviadas", sa.Integer(), server_default="0", nullable=True),
        sa.Column("ultima_mensagem_em", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=20), server_default="active", nullable=False),
        sa.Column("ultimo_sync", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ultimo_erro", sa.Text(), nullable=True),
        sa.Column("refresh_falhas", sa.Integer(), server_default="0", nullable=False),
        sa.Column("refresh_bloqueado_ate", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "conectado_em",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=True,
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
        sa.Column("deletado_em", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'expired', 'revoked', 'error')",
            name=op.f("conexoes_instagram_status_check"),
        ),
        sa.CheckConstraint(
            "token_type IS NULL OR token_type IN ('short_lived', 'long_lived')",
            name=op.f("conexoes_instagram_token_type_check"),
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"],
            ["organizacoes_saas.id"],
            name=op.f("conexoes_instagram_organizacao_id_fkey"),
        ),
        sa.ForeignKeyConstraint(
            ["usuario_id"], ["usuarios.id"], name=op.f("conexoes_instagram_usuario_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("conexoes_instagram_pkey")),
        sa.UniqueConstraint(
            "organizacao_id",
            "usuario_id",
            name=op.f("conexoes_instagram_organizacao_id_usuario_id_key"),
        ),
    )
    op.create_index(
        "idx_conexoes_ig_igid", "conexoes_instagram", ["instagram_user_id"], unique=False
    )
    op.create_index(
        "idx_conexoes_ig_org",
        "conexoes_instagram",
        ["organizacao_id"],
        unique=False,
        postgresql_where=sa.text("deletado_em IS NULL"),
    )
    op.create_index(
        "idx_conexoes_ig_status", "conexoes_instagram", ["organizacao_id", "status"], unique=False
    )
    op.create_index(
        "idx_conexoes_ig_user",
        "conexoes_instagram",
        ["usuario_id"],
        unique=False,
        postgresql_where=sa.text("deletado_em IS NULL"),
    )
    op.create_table(
        "sessoes_whatsapp",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("usuario_id", sa.Uuid(), nullable=False),
        sa.Column("session_name", sa.String(length=100), nullable=False),
        sa.Column("phone_number", sa.String(length=20), nullable=True),
        sa.Column("phone_name", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=20), server_default="disconnected", nullable=False),
        sa.Column("ultimo_qr_gerado", sa.DateTime(timezone=True), nullable=True),
        sa.Column("conectado_em", sa.DateTime(timezone=True), nullable=True),
        sa.Column("desconectado_em", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ultima_mensagem_em", sa.DateTime(timezone=True), nullable=True),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column(
            "webhook_events",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("ARRAY['message', 'message.ack', 'session.status']"),
            nullable=True,
        ),
        sa.Column("total_mensagens_enviadas", sa.Integer(), server_default="0", nullable=True),
        sa.Column("total_mensagens_recebidas", sa.Integer(), server_default="0", nullable=True),
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
            "status IN ('disconnected', 'qr_pending', 'connecting', 'connected', 'failed')",
            name=op.f("sessoes_whatsapp_status_check"),
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"],
            ["organizacoes_saas.id"],
            name=op.f("sessoes_whatsapp_organizacao_id_fkey"),
        ),
        sa.ForeignKeyConstraint(
            ["usuario_id"], ["usuarios.id"], name=op.f("sessoes_whatsapp_usuario_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("sessoes_whatsapp_pkey")),
        sa.UniqueConstraint(
            "organizacao_id",
            "usuario_id",
            name=op.f("sessoes_whatsapp_organizacao_id_usuario_id_key"),
        ),
    )
    op.create_index(
        "idx_sessoes_wpp_org",
        "sessoes_whatsapp",
        ["organizacao_id"],
        unique=False,
        postgresql_where=sa.text("deletado_em IS NULL"),
    )
    op.create_index("idx_sessoes_wpp_session", "sessoes_whatsapp", ["session_name"], unique=False)
    op.create_index(
        "idx_sessoes_wpp_status",
        "sessoes_whatsapp",
        ["organizacao_id", "status"],
        unique=False,
        postgresql_where=sa.text("deletado_em IS NULL"),
    )
