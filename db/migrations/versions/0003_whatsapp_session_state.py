"""WhatsApp session state WAHA users need: disconnect reason, last error, QR rotations, and
the time of the last WAHA status applied (webhooks arrive out of order).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "sessoes_whatsapp"


def upgrade() -> None:
    op.add_column(_TABLE, sa.Column("motivo_desconexao", sa.String(length=40), nullable=True))
    op.add_column(_TABLE, sa.Column("ultimo_erro", sa.Text(), nullable=True))
    op.add_column(
        _TABLE, sa.Column("qr_rotacoes", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(_TABLE, sa.Column("waha_status", sa.String(length=40), nullable=True))
    op.add_column(_TABLE, sa.Column("waha_status_em", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for column in ("waha_status_em", "waha_status", "qr_rotacoes", "ultimo_erro"):
        op.drop_column(_TABLE, column)
    op.drop_column(_TABLE, "motivo_desconexao")
