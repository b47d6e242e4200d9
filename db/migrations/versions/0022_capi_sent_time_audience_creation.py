"""`log_conversions_api.enviado_em`: when Meta answered for the event; audiences created in
two steps (`custom_audiences_meta.estado`, `chave_criacao`).

The statistics count as sent only events Meta answered for (accepted or rejected), and the
last send is the latest such answer; an event closed without reaching Meta (older than 7 days,
or out of retries) keeps it empty. Rows already sent get their log time, the best known.

An audience is written here (`estado` 'creating', keyed by its create request, no Meta id yet)
before Meta creates it, then completed ('ready', Meta's id). A retry of a create that failed
after Meta's answer finds the row and adopts the audience Meta holds instead of making another.

Revision ID: 0022
Revises: 0023
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "log_conversions_api", sa.Column("enviado_em", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(
        "UPDATE log_conversions_api SET enviado_em = criado_em "
        "WHERE status = 'sent' OR (status = 'failed' AND fbrq_event_id IS NOT NULL)"
    )
    op.alter_column("custom_audiences_meta", "audience_id", nullable=True)
    op.add_column(
        "custom_audiences_meta",
        sa.Column("estado", sa.String(length=20), server_default="ready", nullable=False),
    )
    op.add_column("custom_audiences_meta", sa.Column("chave_criacao", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("custom_audiences_meta_estado_check"),
        "custom_audiences_meta",
        "estado IN ('creating', 'ready')",
    )
    op.create_index(
        "uq_audiences_meta_creation",
        "custom_audiences_meta",
        ["organizacao_id", "chave_criacao"],
        unique=True,
        postgresql_where=sa.text("chave_criacao IS NOT NULL"),
    )


def downgrade() -> None:
    op.execute("DELETE FROM custom_audiences_meta WHERE audience_id IS NULL")
    op.drop_index("uq_audiences_meta_creation", table_name="custom_audiences_meta")
    op.drop_constraint(op.f("custom_audiences_meta_estado_check"), "custom_audiences_meta")
    op.drop_column("custom_audiences_meta", "chave_criacao")
    op.drop_column("custom_audiences_meta", "estado")
    op.alter_column("custom_audiences_meta", "audience_id", nullable=False)
    op.drop_column("log_conversions_api", "enviado_em")
