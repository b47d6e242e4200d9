"""Google Calendar: what a connection granted and its two-way sync state, and what a CRM
meeting needs to follow its Google event (the calendar it lives in, Google's last change,
the attendees' answers).

Revision ID: 0009
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SYNC_STATUSES = "('idle', 'syncing', 'ok', 'error')"


def upgrade() -> None:
    op.add_column(
        "conexoes_google", sa.Column("scopes_concedidos", sa.ARRAY(sa.Text()), nullable=True)
    )
    op.add_column(
        "conexoes_google",
        sa.Column("sync_status", sa.String(length=20), server_default="idle", nullable=False),
    )
    op.add_column(
        "conexoes_google",
        sa.Column("sync_falhas", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("conexoes_google", sa.Column("ultimo_sync_erro", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("conexoes_google_sync_status_check"),
        "conexoes_google",
        f"sync_status IN {_SYNC_STATUSES}",
    )
    op.add_column("meetings", sa.Column("google_calendar_id", sa.Text(), nullable=True))
    op.add_column(
        "meetings", sa.Column("google_atualizado_em", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "meetings",
        sa.Column(
            "participantes",
            postgresql.JSONB(),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("meetings", "participantes")
    op.drop_column("meetings", "google_atualizado_em")
    op.drop_column("meetings", "google_calendar_id")
    op.drop_constraint(op.f("conexoes_google_sync_status_check"), "conexoes_google")
    op.drop_column("conexoes_google", "ultimo_sync_erro")
    op.drop_column("conexoes_google", "sync_falhas")
    op.drop_column("conexoes_google", "sync_status")
    op.drop_column("conexoes_google", "scopes_concedidos")
