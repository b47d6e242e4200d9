"""One tenant per Facebook page: at most one active `paginas_meta` row per `page_id`.

A leadgen webhook names only the page, so a page active in two tenants would hand each of them
a copy of every lead. Where that already happened, the tenant that selected the page first
keeps it; the later selections are deactivated (their rows stay, for history).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "uq_paginas_meta_page_active"
_ACTIVE = sa.text("ativo IS NOT FALSE")


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


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="paginas_meta", postgresql_where=_ACTIVE)
