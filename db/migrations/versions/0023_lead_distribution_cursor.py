"""Lead Ads distribution cursor: `organizacoes_saas.lead_ads_ultimo_owner_id`.

Automatic distribution rotates over the tenant's pool across all its forms, so the last user
it handed a lead to is kept once per tenant (not read back per form from the ledger). The row
is locked while the next user is picked, so concurrent leads take consecutive slots.

Revision ID: 0023
Revises: 0021
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # No foreign key: a user leaving the pool only makes the next pick start over.
    op.add_column(
        "organizacoes_saas",
        sa.Column("lead_ads_ultimo_owner_id", sa.Uuid(), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("organizacoes_saas", "lead_ads_ultimo_owner_id")
