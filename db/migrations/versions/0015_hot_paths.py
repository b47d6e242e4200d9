"""The queue's claim served by indexes: one ordered partial index per kind of due job, and a
plpgsql claim whose statements are planned once per connection.

0002's claim was one SQL function with `(pending AND due) OR (processing AND lease ran out)`:
PostgreSQL re-planned it on every call, and the OR let no index deliver rows in order, so
every claim read and sorted every pending row. Now the lost leases are taken first (rare, and
the oldest due work) and then the due jobs, each from its own index in the order it is
claimed, stopping at the limit.

Revision ID: 0015
Revises: 0019
Create Date: 2026-12-07
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.migrations.r0001.security import APP_ROLE, DEFINER_ROLE

revision: str = "0015"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SIGNATURE = "app_claim_jobs_at(text, integer, integer, text[], timestamptz)"
_TABLE = "eventos_pendentes"

CLAIM = """
CREATE OR REPLACE FUNCTION app_claim_jobs_at(p_worker text, p_limit int, p_lease_seconds int,
                                             p_operations text[], p_now timestamptz)
RETURNS SETOF eventos_pendentes
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  v_now timestamptz := COALESCE(p_now, now());
  v_limit int := LEAST(GREATEST(p_limit, 0), 1000);
  v_lease interval := make_interval(secs => GREATEST(p_lease_seconds, 1));
  v_taken int;
BEGIN
  -- A job still 'processing' past its lease was abandoned mid-run: that run was an attempt.
  RETURN QUERY
  UPDATE eventos_pendentes e
     SET status = 'processing',
         tentativas = e.tentativas + 1,
         ultimo_erro = 'worker lost during attempt (lease expired)',
         lease_owner = p_worker,
         lease_expires_at = v_now + v_lease
    FROM (SELECT x.id
            FROM eventos_pendentes x
           WHERE x.status = 'processing' AND x.lease_expires_at < v_now
             AND (p_operations IS NULL OR x.operacao = ANY (p_operations))
           ORDER BY x.lease_expires_at
           LIMIT v_limit
             FOR UPDATE SKIP LOCKED) lost
   WHERE e.id = lost.id
  RETURNING e.*;
  GET DIAGNOSTICS v_taken = ROW_COUNT;
  IF v_taken >= v_limit THEN
    RETURN;
  END IF;
  RETURN QUERY
  UPDATE eventos_pendentes e
     SET status = 'processing',
         lease_owner = p_worker,
         lease_expires_at = v_now + v_lease
    FROM (SELECT x.id
            FROM eventos_pendentes x
           WHERE x.status = 'pending' AND x.proxima_tentativa <= v_now
             AND (p_operations IS NULL OR x.operacao = ANY (p_operations))
           ORDER BY x.proxima_tentativa, x.criado_em
           LIMIT v_limit - v_taken
             FOR UPDATE SKIP LOCKED) due
   WHERE e.id = due.id
  RETURNING e.*;
END
$$"""


def _grant_claim() -> None:
    op.execute(f"ALTER FUNCTION {_SIGNATURE} OWNER TO {DEFINER_ROLE}")
    op.execute(f"REVOKE ALL ON FUNCTION {_SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {_SIGNATURE} TO {APP_ROLE}")


def upgrade() -> None:
    op.create_index(
        "idx_eventos_pendentes_due",
        _TABLE,
        ["proxima_tentativa", "criado_em"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "idx_eventos_pendentes_lease",
        _TABLE,
        ["lease_expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'processing'"),
    )
    op.drop_index("idx_eventos_pendentes_status", table_name=_TABLE)
    op.execute(CLAIM)
    _grant_claim()


def downgrade() -> None:
    queue_worker = importlib.import_module("db.migrations.versions.0002_queue_worker")
    op.execute(f"DROP FUNCTION IF EXISTS {_SIGNATURE}")
    op.execute(queue_worker.FUNCTIONS[_SIGNATURE])
    _grant_claim()
    op.create_index(
        "idx_eventos_pendentes_status",
        _TABLE,
        ["status", "proxima_tentativa"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'processing')"),
    )
    op.drop_index("idx_eventos_pendentes_lease", table_name=_TABLE)
    op.drop_index("idx_eventos_pendentes_due", table_name=_TABLE)
