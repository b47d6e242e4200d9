"""One tenant per Facebook page, and rejected webhooks counted rather than audited one by one.

A leadgen webhook names only the page, so a page active in two tenants would hand each of them
a copy of every lead: at most one active `paginas_meta` row per `page_id`. Where that already
happened, the tenant that selected the page first keeps it; the later selections are
deactivated (their rows stay, for history).

`webhook_rejeicoes` counts unsigned and badly signed webhooks per source address and minute
(global, no tenant is known for them); only the first of each minute is audited, so a flood
of forged requests cannot flood `audit_log`.

Revision ID: 0013
Revises: 0018
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.migrations.r0001.security import APP_ROLE

revision: str = "0013"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "uq_paginas_meta_page_active"
_ACTIVE = sa.text("ativo IS NOT FALSE")
_REJECTIONS = "webhook_rejeicoes"


def upgrade() -> None:
    op.execute(
        """
        UPDATE paginas_meta p SET ativo = false, page_access_token_encrypted = NULL
         WHERE p.ativo IS NOT FALSE
           AND EXISTS (
             SELECT 1 FROM paginas_meta q
              WHERE q.page_id = p.page_id AND q.ativo IS NOT FALSE
                AND (q.criado_em, q.id) < (p.criado_em, p.id))
        """
    )
    op.create_index(_INDEX, "paginas_meta", ["page_id"], unique=True, postgresql_where=_ACTIVE)
    op.create_table(
        _REJECTIONS,
        sa.Column("origem", sa.String(length=64), nullable=False),
        sa.Column("minuto", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sem_assinatura", sa.Integer(), server_default="0", nullable=False),
        sa.Column("assinatura_invalida", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "ultima_em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("origem", "minuto", name=op.f(f"{_REJECTIONS}_pkey")),
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {_REJECTIONS} TO {APP_ROLE}")


def downgrade() -> None:
    op.drop_table(_REJECTIONS)
    op.drop_index(_INDEX, table_name="paginas_meta", postgresql_where=_ACTIVE)
