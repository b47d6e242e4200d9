"""Initial schema: every table, RLS, the app and definer roles, functions and the health view.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.migrations.r0001 import (
    functions,
    security,
    tables_crm,
    tables_meta,
    tables_personal,
    tables_platform,
)

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MODULES = (tables_crm, tables_personal, tables_meta, tables_platform)
TABLES: tuple[str, ...] = tuple(t for m in MODULES for t in m.TABLES)
PERSONAL = frozenset(
    {"sessoes_whatsapp", "conexoes_google", "conexoes_email", "conexoes_instagram"}
)
PLATFORM_ROWS = frozenset({"audit_log", "alerts", "idempotency_records"})


def _tables_with_column(column: str) -> tuple[str, ...]:
    rows = op.get_bind().execute(
        sa.text(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND column_name = :c "
            "AND table_name = ANY(:t) ORDER BY table_name"
        ),
        {"c": column, "t": list(TABLES)},
    )
    return tuple(r[0] for r in rows)


def upgrade() -> None:
    security.create_roles()
    for module in MODULES:
        module.create()
    security.create_triggers(_tables_with_column("atualizado_em"))
    security.create_view()
    security.grant(TABLES)
    security.enable_rls(frozenset(_tables_with_column("organizacao_id")), PERSONAL, PLATFORM_ROWS)
    functions.create()


def downgrade() -> None:
    # The roles stay: they are cluster-wide and other databases may use them.
    functions.drop()
    op.execute("DROP VIEW IF EXISTS integracao_health")
    for table in reversed(TABLES):
        op.drop_table(table)
    security.drop_triggers()
    security.revoke_schema()
