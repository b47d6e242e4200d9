"""Revision 0001, tables: job queue, webhook inbox, audit, alerts, idempotency, global state.

Frozen at revision 0001: later schema changes go in new revisions, never here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

TABLES: tuple[str, ...] = (
    "circuit_breakers",
    "oauth_states",
    "platform_credentials",
    "audit_log",
    "eventos_pendentes",
    "idempotency_records",
    "webhook_inbox",
    "alerts",
)


def create() -> None:
    op.create_table(
        "circuit_breakers",
        sa.Column("provider", sa.String(length=50), nullable=False),
        sa.Column("state", sa.String(length=20), server_default="closed", nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("half_open_probe_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("probe_lease_owner", sa.String(length=255), nullable=True),
        sa.Column("probe_lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "state IN ('closed', 'open', 'half_open')", name=op.f("circuit_breakers_state_check")
        ),
        sa.PrimaryKeyConstraint("provider", name=op.f("circuit_breakers_pkey")),
    )
    op.create_table(
        "oauth_states",
        sa.Column("nonce", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("nonce", name=op.f("oauth_states_pkey")),
    )
    op.create_index("idx_oauth_states_expires", "oauth_states", ["expires_at"], unique=False)
    op.create_table(
        "platform_credentials",
        sa.Column("provider", sa.String(length=30), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value_encrypted", sa.Text(), nullable=True),
        sa.Column("value_plain", sa.Text(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("updated_by", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("provider", "key", name=op.f("platform_credentials_pkey")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=True),
        sa.Column("usuario_id", sa.Uuid(), nullable=True),
        sa.Column("actor_role", sa.String(length=20), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("entity_type", sa.String(length=50), nullable=True),
        sa.Column("entity_id", sa.String(length=255), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"], ["organizacoes_saas.id"], name=op.f("audit_log_organizacao_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("audit_log_pkey")),
    )
    op.create_index(
        "idx_audit_log_org",
        "audit_log",
        ["organizacao_id", sa.literal_column("criado_em DESC")],
        unique=False,
    )
    op.create_table(
        "eventos_pendentes",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("tipo", sa.String(length=50), nullable=False),
        sa.Column("operacao", sa.String(length=100), nullable=False),
        sa.Column("destino", sa.String(length=255), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "idempotency_key",
            sa.String(length=255),
            server_default=sa.text("gen_random_uuid()::text"),
            nullable=False,
        ),
        sa.Column("tentativas", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_tentativas", sa.Integer(), server_default="5", nullable=False),
        sa.Column(
            "proxima_tentativa",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("ultimo_erro", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=20), server_default="pending", nullable=False),
        sa.Column("lease_owner", sa.String(length=255), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
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
            "status IN ('pending', 'processing', 'completed', 'failed', 'discarded')",
            name=op.f("eventos_pendentes_status_check"),
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"],
            ["organizacoes_saas.id"],
            name=op.f("eventos_pendentes_organizacao_id_fkey"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("eventos_pendentes_pkey")),
        sa.UniqueConstraint(
            "organizacao_id",
            "idempotency_key",
            name=op.f("eventos_pendentes_organizacao_id_idempotency_key_key"),
        ),
    )
    op.create_index(
        "idx_eventos_pendentes_dlq",
        "eventos_pendentes",
        ["organizacao_id", "atualizado_em"],
        unique=False,
        postgresql_where=sa.text("status = 'failed'"),
    )
    op.create_index(
        "idx_eventos_pendentes_org", "eventos_pendentes", ["organizacao_id"], unique=False
    )
    op.create_index(
        "idx_eventos_pendentes_status",
        "eventos_pendentes",
        ["status", "proxima_tentativa"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'processing')"),
    )
    op.create_table(
        "idempotency_records",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=True),
        sa.Column("request_id", sa.String(length=100), nullable=False),
        sa.Column("rpc", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("response", sa.LargeBinary(), nullable=True),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"],
            ["organizacoes_saas.id"],
            name=op.f("idempotency_records_organizacao_id_fkey"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("idempotency_records_pkey")),
        sa.UniqueConstraint(
            "organizacao_id",
            "rpc",
            "request_id",
            name=op.f("idempotency_records_organizacao_id_rpc_request_id_key"),
            postgresql_nulls_not_distinct=True,
        ),
    )
    op.create_index(
        "idx_idempotency_records_criado", "idempotency_records", ["criado_em"], unique=False
    )
    op.create_table(
        "webhook_inbox",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=True),
        sa.Column("provider", sa.String(length=30), nullable=False),
        sa.Column("provider_event_id", sa.String(length=255), nullable=False),
        sa.Column(
            "headers",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "query",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("verdict", sa.String(length=20), server_default="accepted", nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "verdict IN ('accepted', 'duplicate', 'rejected')",
            name=op.f("webhook_inbox_verdict_check"),
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"],
            ["organizacoes_saas.id"],
            name=op.f("webhook_inbox_organizacao_id_fkey"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("webhook_inbox_pkey")),
        sa.UniqueConstraint(
            "provider",
            "provider_event_id",
            name=op.f("webhook_inbox_provider_provider_event_id_key"),
        ),
    )
    op.create_index(
        "idx_webhook_inbox_org",
        "webhook_inbox",
        ["organizacao_id", sa.literal_column("received_at DESC")],
        unique=False,
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=True),
        sa.Column("audience", sa.String(length=20), nullable=False),
        sa.Column("usuario_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("severity", sa.String(length=20), server_default="warning", nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("lido_em", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "audience IN ('super_admin', 'tenant_admin', 'user')",
            name=op.f("alerts_audience_check"),
        ),
        sa.CheckConstraint(
            "severity IN ('info', 'warning', 'critical')", name=op.f("alerts_severity_check")
        ),
        sa.ForeignKeyConstraint(
            ["organizacao_id"], ["organizacoes_saas.id"], name=op.f("alerts_organizacao_id_fkey")
        ),
        sa.ForeignKeyConstraint(
            ["usuario_id"], ["usuarios.id"], name=op.f("alerts_usuario_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("alerts_pkey")),
    )
    op.create_index(
        "idx_alerts_org",
        "alerts",
        ["organizacao_id", sa.literal_column("criado_em DESC")],
        unique=False,
    )
    op.create_index(
        "idx_alerts_unread",
        "alerts",
        ["organizacao_id", "audience", "usuario_id"],
        unique=False,
        postgresql_where=sa.text("lido_em IS NULL"),
    )
