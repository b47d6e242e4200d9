"""AIP-155 request ids keyed by the caller: `idempotency_records.caller` (the user or service
identity), `claimed_at` (when the running attempt took the slot) and a keyed fingerprint.

The slot is (tenant, caller, full RPC name, request_id): two users of one tenant may pick the
same request id without seeing each other's answers. `request_hash` now holds
`<key id>:<HMAC-SHA256>` (server/idempotency.py), longer than the old bare SHA-256.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "idempotency_records"
_OLD_KEY = "idempotency_records_organizacao_id_rpc_request_id_key"
_NEW_KEY = "idempotency_records_slot_key"


def upgrade() -> None:
    # Rows written before this revision carry no caller and an unkeyed digest: nothing new
    # can match them, so they are dropped rather than kept for their last days.
    op.execute(f"DELETE FROM {_TABLE}")
    op.add_column(_TABLE, sa.Column("caller", sa.String(length=120), nullable=False))
    op.add_column(
        _TABLE,
        sa.Column(
            "claimed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.alter_column(_TABLE, "request_hash", type_=sa.String(length=120))
    op.drop_constraint(_OLD_KEY, _TABLE, type_="unique")
    op.create_unique_constraint(
        _NEW_KEY,
        _TABLE,
        ["organizacao_id", "caller", "rpc", "request_id"],
        postgresql_nulls_not_distinct=True,
    )


def downgrade() -> None:
    op.execute(f"DELETE FROM {_TABLE}")
    op.drop_constraint(_NEW_KEY, _TABLE, type_="unique")
    op.create_unique_constraint(
        _OLD_KEY,
        _TABLE,
        ["organizacao_id", "rpc", "request_id"],
        postgresql_nulls_not_distinct=True,
    )
    op.alter_column(_TABLE, "request_hash", type_=sa.String(length=64))
    op.drop_column(_TABLE, "claimed_at")
    op.drop_column(_TABLE, "caller")
