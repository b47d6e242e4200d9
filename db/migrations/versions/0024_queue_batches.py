"""The queue's bookkeeping in one prepared round trip each, and a send's result in one statement.

- `app_complete_job`, `app_retry_job`, `app_postpone_job`: a leased job's outcome, guarded by
  its lease (`lease_owner = worker`, `status = 'processing'`) exactly as the tenant-scoped
  UPDATEs they replace, but in one statement (no BEGIN, settings and COMMIT around it) whose
  plan each connection keeps. SECURITY DEFINER like the claim that handed out the lease: the
  worker writes only rows it holds. They also run inside a tenant's transaction, so a handler
  can complete its job with its own last write.
- `app_renew_job_leases`: one heartbeat for every long-running job of a worker; returns the
  ids whose lease it still holds.
- `app_claim_jobs_at` (0015's body) plans its due-jobs query without a sort: the ordered
  partial index then always serves it, reading only the rows it claims. With statistics taken
  before a burst of jobs, the planner believed a few rows were pending and read and sorted
  every one of them (a bitmap scan) on each claim, so a claim cost grew with the backlog.
- `idx_eventos_pendentes_org` is dropped: the unique (organizacao_id, idempotency_key) index
  leads with the same column and serves the same lookups, and each of a job's updates (claim,
  completion) had to write an entry in both.
- `record_outbox_change`: the change feed's record (the tenant's next sequence, the outbox row,
  the outbound webhook deliveries, which carry the recording call's request id and trace):
  the one definition, called by server/outbox/record.py and from a larger statement (a
  WhatsApp send's result). SECURITY INVOKER: row-level security applies.

Revision ID: 0024
Revises: 0022
Create Date: 2026-12-07
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from alembic import op

from db.migrations.r0001.security import APP_ROLE, DEFINER_ROLE

revision: str = "0024"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HEADER = "LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp"
_LEASED = "id = p_id AND lease_owner = p_worker AND status = 'processing'"
_AT = "COALESCE(p_now, now())"

DEFINER_FUNCTIONS: dict[str, str] = {
    "app_complete_job(uuid, text, integer, integer)": f"""
CREATE FUNCTION app_complete_job(p_id uuid, p_worker text, p_attempt int, p_max int)
RETURNS boolean {_HEADER} AS $$
BEGIN
  UPDATE eventos_pendentes
     SET status = 'completed', tentativas = p_attempt, max_tentativas = p_max,
         lease_owner = NULL, lease_expires_at = NULL
   WHERE {_LEASED};
  RETURN FOUND;
END
$$""",
    "app_retry_job(uuid, text, integer, integer, text, double precision, timestamptz)": f"""
CREATE FUNCTION app_retry_job(p_id uuid, p_worker text, p_attempt int, p_max int,
                              p_error text, p_delay double precision, p_now timestamptz)
RETURNS boolean {_HEADER} AS $$
BEGIN
  UPDATE eventos_pendentes
     SET status = 'pending', tentativas = p_attempt, max_tentativas = p_max,
         ultimo_erro = p_error,
         proxima_tentativa = {_AT} + make_interval(secs => p_delay),
         lease_owner = NULL, lease_expires_at = NULL
   WHERE {_LEASED};
  RETURN FOUND;
END
$$""",
    "app_postpone_job(uuid, text, double precision, timestamptz, text)": f"""
CREATE FUNCTION app_postpone_job(p_id uuid, p_worker text, p_delay double precision,
                                 p_now timestamptz, p_reason text)
RETURNS boolean {_HEADER} AS $$
BEGIN
  UPDATE eventos_pendentes
     SET status = 'pending',
         proxima_tentativa = {_AT} + make_interval(secs => p_delay),
         ultimo_erro = COALESCE(p_reason, ultimo_erro),
         lease_owner = NULL, lease_expires_at = NULL
   WHERE {_LEASED};
  RETURN FOUND;
END
$$""",
    "app_renew_job_leases(uuid[], text, double precision, timestamptz)": f"""
CREATE FUNCTION app_renew_job_leases(p_ids uuid[], p_worker text, p_lease double precision,
                                     p_now timestamptz)
RETURNS SETOF uuid {_HEADER} AS $$
BEGIN
  RETURN QUERY
  UPDATE eventos_pendentes
     SET lease_expires_at = {_AT} + make_interval(secs => p_lease)
   WHERE id = ANY (p_ids) AND lease_owner = p_worker AND status = 'processing'
  RETURNING id;
END
$$""",
}

_RECORD_SIGNATURE = (
    "record_outbox_change(uuid, uuid, text, uuid, jsonb, text, text, integer, boolean, text, text)"
)
RECORD_CHANGE = """
CREATE FUNCTION record_outbox_change(p_id uuid, p_tenant uuid, p_kind text, p_user uuid,
                                  p_payload jsonb, p_tipo text, p_operation text,
                                  p_attempts int, p_deliver boolean,
                                  p_request_id text, p_traceparent text)
RETURNS TABLE (sequencia bigint, criado_em timestamptz, deliveries bigint)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH seq AS (
    INSERT INTO outbox_sequencias AS s (organizacao_id, ultima_sequencia)
    VALUES (p_tenant, 1)
    ON CONFLICT (organizacao_id) DO UPDATE SET ultima_sequencia = s.ultima_sequencia + 1
    RETURNING s.ultima_sequencia
  ), ev AS (
    INSERT INTO outbox_eventos AS o (id, organizacao_id, sequencia, tipo, usuario_id, payload)
    SELECT p_id, p_tenant, seq.ultima_sequencia, p_kind, p_user, p_payload FROM seq
    RETURNING o.sequencia, o.criado_em
  ), hooks AS (
    INSERT INTO eventos_pendentes (organizacao_id, tipo, operacao, destino, payload,
                                   idempotency_key, max_tentativas, proxima_tentativa,
                                   request_id, traceparent)
    SELECT w.organizacao_id, p_tipo, p_operation, w.url,
           jsonb_build_object('endpoint_id', w.id, 'event_id', CAST(p_id AS text),
                              'sequence', ev.sequencia),
           'webhook:' || w.id || ':' || CAST(p_id AS text), p_attempts, now(),
           p_request_id, p_traceparent
      FROM webhooks_saida w, ev
     WHERE p_deliver AND w.ativo AND w.deletado_em IS NULL
       AND (cardinality(w.eventos) = 0 OR p_kind = ANY (w.eventos))
    ON CONFLICT (organizacao_id, idempotency_key) DO NOTHING
    RETURNING 1
  )
  SELECT CAST(ev.sequencia AS bigint), ev.criado_em, (SELECT count(*) FROM hooks) FROM ev;
END
$$"""


_HOT_PATHS = "db.migrations.versions.0015_hot_paths"
_PINNED = "SET search_path = public, pg_temp AS $$"


def _claim(*, ordered: bool) -> str:
    claim: str = importlib.import_module(_HOT_PATHS).CLAIM
    assert _PINNED in claim
    if ordered:
        claim = claim.replace(
            _PINNED, "SET search_path = public, pg_temp SET enable_sort = off AS $$"
        )
    return claim


def upgrade() -> None:
    op.execute(_claim(ordered=True))
    op.drop_index("idx_eventos_pendentes_org", table_name="eventos_pendentes")
    for signature, ddl in DEFINER_FUNCTIONS.items():
        op.execute(ddl)
        op.execute(f"ALTER FUNCTION {signature} OWNER TO {DEFINER_ROLE}")
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {APP_ROLE}")
    op.execute(RECORD_CHANGE)
    op.execute(f"REVOKE ALL ON FUNCTION {_RECORD_SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {_RECORD_SIGNATURE} TO {APP_ROLE}")


def downgrade() -> None:
    op.execute(_claim(ordered=False))
    op.create_index("idx_eventos_pendentes_org", "eventos_pendentes", ["organizacao_id"])
    op.execute(f"DROP FUNCTION IF EXISTS {_RECORD_SIGNATURE}")
    for signature in reversed(DEFINER_FUNCTIONS):
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
