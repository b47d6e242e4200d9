"""`log_conversions_api.enviado_em`: when Meta answered for the event.

The statistics count as sent only events Meta answered for (accepted or rejected), and the
last send is the latest such answer; an event closed without reaching Meta (older than 7 days,
or out of retries) keeps it empty. Rows already sent get their log time, the best known.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
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


def downgrade() -> None:
    op.drop_column("log_conversions_api", "enviado_em")
