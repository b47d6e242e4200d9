"""Meetings the CRM schedules, and one Google sync at a time without a held transaction.

`meetings.crm_atualizado_em`: when the CRM's last applied word about the meeting happened
(a pipeline event's `occurred_at`), so an older publish never overwrites a newer one.
`conexoes_google.sync_lease`/`sync_lease_ate`: the sync that holds the connection and until
when (a crashed holder's lease runs out); `sync_pendente`: a notification arrived while the
sync ran, so the holder reads again before letting go.

Revision ID: 0018
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "meetings", sa.Column("crm_atualizado_em", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "conexoes_google", sa.Column("sync_lease", postgresql.UUID(as_uuid=True), nullable=True)
    )
    op.add_column(
        "conexoes_google", sa.Column("sync_lease_ate", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "conexoes_google",
        sa.Column("sync_pendente", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("conexoes_google", "sync_pendente")
    op.drop_column("conexoes_google", "sync_lease_ate")
    op.drop_column("conexoes_google", "sync_lease")
    op.drop_column("meetings", "crm_atualizado_em")
