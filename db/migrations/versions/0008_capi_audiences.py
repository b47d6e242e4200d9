"""Conversions API and Custom Audiences: the pipeline-event ledger (`eventos_pipeline`, one row
per producer request id per tenant), what each CAPI send needs to be logged once per event
(`log_conversions_api.event_id`, attempts, test flag), the Lead already sent for a contact
(`contatos.capi_lead_event_id`: one Lead per contact), and an audience's Meta description,
customer-file source and size range.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from db.migrations.r0001.security import APP_ROLE, TENANT

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LEDGER = "eventos_pipeline"
_EVENT_TYPES = "'lead', 'schedule', 'mql', 'won', 'lost'"


def _ledger() -> None:
    op.create_table(
        _LEDGER,
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=False),
        sa.Column("evento", sa.String(length=20), nullable=False),
        sa.Column("contato_id", sa.Uuid(), nullable=False),
        sa.Column("oportunidade_id", sa.Uuid(), nullable=True),
        sa.Column("meeting_id", sa.Uuid(), nullable=True),
        sa.Column("ocorrido_em", sa.DateTime(timezone=True), nullable=False),
        sa.Column("capi_event_name", sa.String(length=50), nullable=False),
        sa.Column("resumo", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "criado_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint(f"evento IN ({_EVENT_TYPES})", name=op.f(f"{_LEDGER}_evento_check")),
        sa.ForeignKeyConstraint(
            ["organizacao_id"],
            ["organizacoes_saas.id"],
            name=op.f(f"{_LEDGER}_organizacao_id_fkey"),
        ),
        sa.ForeignKeyConstraint(
            ["contato_id"], ["contatos.id"], name=op.f(f"{_LEDGER}_contato_id_fkey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"{_LEDGER}_pkey")),
        sa.UniqueConstraint(
            "organizacao_id", "request_id", name=op.f(f"{_LEDGER}_organizacao_id_request_id_key")
        ),
    )
    op.create_index("idx_eventos_pipeline_evento", _LEDGER, ["organizacao_id", "evento"])
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {_LEDGER} TO {APP_ROLE}")
    op.execute(f"ALTER TABLE {_LEDGER} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {_LEDGER} FORCE ROW LEVEL SECURITY")
    where = f"organizacao_id = {TENANT}"
    policy = f'CREATE POLICY "tenant_isolation" ON {_LEDGER}'
    op.execute(f"{policy} USING ({where}) WITH CHECK ({where})")


def upgrade() -> None:
    _ledger()
    op.add_column("contatos", sa.Column("capi_lead_event_id", sa.String(length=100)))
    op.add_column("config_conversions_api", sa.Column("ultimo_erro", sa.Text()))
    # A token Meta refused for good marks the configuration (like any connection's status).
    op.add_column(
        "config_conversions_api",
        sa.Column("status", sa.String(length=20), server_default="active", nullable=False),
    )
    op.create_check_constraint(
        op.f("config_conversions_api_status_check"),
        "config_conversions_api",
        "status IN ('active', 'expired', 'revoked', 'error')",
    )
    # The Meta event to send (hashed user data only), kept until Meta accepts or rejects it.
    op.add_column(
        "log_conversions_api",
        sa.Column("evento_meta", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column("log_conversions_api", sa.Column("event_id", sa.String(length=100)))
    op.add_column(
        "log_conversions_api",
        sa.Column("tentativas", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "log_conversions_api",
        sa.Column("teste", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    # One log row per real event (retries update it); test sends are logged each time.
    op.create_index(
        "uq_log_capi_event_id",
        "log_conversions_api",
        ["organizacao_id", "event_id"],
        unique=True,
        postgresql_where=sa.text("NOT teste"),
    )
    op.add_column("custom_audiences_meta", sa.Column("description", sa.Text()))
    op.add_column(
        "custom_audiences_meta",
        sa.Column(
            "customer_file_source",
            sa.String(length=40),
            server_default="USER_PROVIDED_ONLY",
            nullable=False,
        ),
    )
    op.add_column(
        "custom_audiences_meta", sa.Column("approximate_count_lower_bound", sa.BigInteger())
    )
    op.add_column(
        "custom_audiences_meta", sa.Column("approximate_count_upper_bound", sa.BigInteger())
    )
    op.add_column("custom_audiences_meta", sa.Column("ultimo_erro", sa.Text()))


def downgrade() -> None:
    for column in (
        "ultimo_erro",
        "approximate_count_upper_bound",
        "approximate_count_lower_bound",
        "customer_file_source",
        "description",
    ):
        op.drop_column("custom_audiences_meta", column)
    op.drop_index("uq_log_capi_event_id", table_name="log_conversions_api")
    for column in ("teste", "tentativas", "event_id"):
        op.drop_column("log_conversions_api", column)
    op.drop_column("log_conversions_api", "evento_meta")
    op.drop_constraint(op.f("config_conversions_api_status_check"), "config_conversions_api")
    op.drop_column("config_conversions_api", "status")
    op.drop_column("config_conversions_api", "ultimo_erro")
    op.drop_column("contatos", "capi_lead_event_id")
    op.drop_table(_LEDGER)
