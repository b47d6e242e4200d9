"""`atualizado_em` from clock_timestamp(): ordered per row, so streams can drop stale events.

now() is the transaction's start time: a transaction that waited for a row lock stamps its
later change with an earlier time. clock_timestamp() is read when the trigger runs, after the
lock is held, so successive changes of one row carry increasing stamps.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BODY = """
CREATE OR REPLACE FUNCTION set_atualizado_em() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.atualizado_em := {clock};
  RETURN NEW;
END $$"""


def upgrade() -> None:
    op.execute(_BODY.format(clock="clock_timestamp()"))


def downgrade() -> None:
    op.execute(_BODY.format(clock="now()"))
