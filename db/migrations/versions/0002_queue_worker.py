"""Queue workers: claims with an explicit clock, wake-up NOTIFY, backlog counts, purging.

- `app_claim_jobs_at`: `app_claim_jobs` with the time passed in (tests drive it with a fake
  clock; NULL means the database's now()), and a reclaimed job (its worker's lease ran out)
  counts the lost run as an attempt, so a job that kills its worker cannot loop forever.
- `conexoes_jobs` NOTIFY from a trigger whenever a job becomes due now (insert, or a retry
  from the dead-letter queue), so idle workers wake at once instead of on their next poll.
- `app_job_backlog`: jobs waiting for a retry per tenant (the spec's "> 10" alert).
- `app_purge_expired`: old AIP-155 request ids, used/expired OAuth states, finished jobs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from db.migrations.r0001.security import APP_ROLE, DEFINER_ROLE

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HEADER = "SECURITY DEFINER SET search_path = public, pg_temp"

FUNCTIONS: dict[str, str] = {
    "app_claim_jobs_at(text, integer, integer, text[], timestamptz)": f"""
CREATE FUNCTION app_claim_jobs_at(p_worker text, p_limit int, p_lease_seconds int,
                                  p_operations text[], p_now timestamptz)
RETURNS SETOF eventos_pendentes
LANGUAGE sql VOLATILE {HEADER} AS $$
  WITH due AS (
    SELECT e.id
      FROM eventos_pendentes e
     WHERE ((e.status = 'pending' AND e.proxima_tentativa <= COALESCE(p_now, now()))
            OR (e.status = 'processing' AND e.lease_expires_at < COALESCE(p_now, now())))
       AND (p_operations IS NULL OR e.operacao = ANY (p_operations))
     ORDER BY e.proxima_tentativa, e.criado_em
     LIMIT LEAST(GREATEST(p_limit, 0), 1000)
       FOR UPDATE SKIP LOCKED
  )
  UPDATE eventos_pendentes e
     SET status = 'processing',
         -- SET reads the old row: a job still 'processing' here was abandoned mid-run.
         tentativas = CASE WHEN e.status = 'processing' THEN e.tentativas + 1
                           ELSE e.tentativas END,
         ultimo_erro = CASE WHEN e.status = 'processing'
                            THEN 'worker lost during attempt (lease expired)'
                            ELSE e.ultimo_erro END,
         lease_owner = p_worker,
         lease_expires_at = COALESCE(p_now, now())
                            + make_interval(secs => GREATEST(p_lease_seconds, 1))
    FROM due
   WHERE e.id = due.id
  RETURNING e.*
$$;""",
    "app_job_backlog(integer)": f"""
CREATE FUNCTION app_job_backlog(p_more_than int)
RETURNS TABLE(organizacao_id uuid, pendentes bigint)
LANGUAGE sql STABLE {HEADER} AS $$
  SELECT e.organizacao_id, count(*)
    FROM eventos_pendentes e
   WHERE e.status = 'pending' AND e.tentativas > 0
   GROUP BY e.organizacao_id
  HAVING count(*) > p_more_than
   ORDER BY e.organizacao_id
$$;""",
    "app_purge_expired(interval, interval)": f"""
CREATE FUNCTION app_purge_expired(p_request_ids_older_than interval,
                                  p_finished_jobs_older_than interval)
RETURNS TABLE(idempotency_records bigint, oauth_states bigint, jobs bigint)
LANGUAGE plpgsql VOLATILE {HEADER} AS $$
DECLARE
  n_ids bigint;
  n_states bigint;
  n_jobs bigint;
BEGIN
  DELETE FROM idempotency_records WHERE criado_em < now() - p_request_ids_older_than;
  GET DIAGNOSTICS n_ids = ROW_COUNT;
  -- A state lives 10 minutes; keep a day of them for investigating replays.
  DELETE FROM oauth_states WHERE expires_at < now() - interval '1 day';
  GET DIAGNOSTICS n_states = ROW_COUNT;
  -- Dead-lettered ('failed') jobs stay until an admin retries or discards them.
  DELETE FROM eventos_pendentes
   WHERE status IN ('completed', 'discarded')
     AND atualizado_em < now() - p_finished_jobs_older_than;
  GET DIAGNOSTICS n_jobs = ROW_COUNT;
  RETURN QUERY SELECT n_ids, n_states, n_jobs;
END
$$;""",
}

# One statement per item: asyncpg runs each as a prepared statement.
TRIGGER_DDL: tuple[str, ...] = (
    """
CREATE FUNCTION notify_job_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- Identical payloads in one transaction are folded into one notification.
  PERFORM pg_notify('conexoes_jobs', NEW.operacao);
  RETURN NULL;
END $$""",
    """CREATE TRIGGER trg_eventos_pendentes_due AFTER INSERT OR UPDATE OF status
  ON eventos_pendentes FOR EACH ROW
  WHEN (NEW.status = 'pending' AND NEW.proxima_tentativa <= now())
  EXECUTE FUNCTION notify_job_due()""",
)

DEFINER_GRANTS = {
    "eventos_pendentes": "DELETE",
    "idempotency_records": "SELECT, DELETE",
    "oauth_states": "SELECT, DELETE",
}


def upgrade() -> None:
    for table, privileges in DEFINER_GRANTS.items():
        op.execute(f"GRANT {privileges} ON {table} TO {DEFINER_ROLE}")
    # idempotency_records has forced RLS: open it to the definer like 0001 does for its tables.
    op.execute(
        f'CREATE POLICY "definer_access" ON idempotency_records TO {DEFINER_ROLE} '
        "USING (true) WITH CHECK (true)"
    )
    for signature, ddl in FUNCTIONS.items():
        op.execute(ddl)
        op.execute(f"ALTER FUNCTION {signature} OWNER TO {DEFINER_ROLE}")
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {APP_ROLE}")
    for statement in TRIGGER_DDL:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS trg_eventos_pendentes_due ON eventos_pendentes")
    op.execute("DROP FUNCTION IF EXISTS notify_job_due()")
    for signature in reversed(FUNCTIONS):
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    op.execute('DROP POLICY IF EXISTS "definer_access" ON idempotency_records')
    for table, privileges in DEFINER_GRANTS.items():
        op.execute(f"REVOKE {privileges} ON {table} FROM {DEFINER_ROLE}")
