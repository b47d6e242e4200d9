"""Observability: a status history for every connection, token refresh attempts, the request id
of each job, and one function the metrics sampler reads the service's gauges from.

- `conexoes_status_historico` is filled by a trigger on each connection table (every INSERT,
  status change, soft delete and DELETE), so no code path can change a status without leaving
  its row; the reason is the first non-empty of the table's reason columns at that moment.
  Existing connections get one row with their current status (reason `baseline`).
- `tokens_renovacoes` records each OAuth token refresh attempt (server/tokens/keeper.py).
- `eventos_pendentes.request_id` and `traceparent` carry the enqueuing call's request id and
  trace into the job's logs and spans.
- `app_observability_gauges()` aggregates across tenants (no tenant or user in its output).

Revision ID: 0014
Revises: 0016
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.migrations.r0001.security import APP_ROLE, DEFINER_ROLE, TENANT

revision: str = "0014"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HEADER = "SECURITY DEFINER SET search_path = public, pg_temp"
HISTORY = "conexoes_status_historico"
REFRESHES = "tokens_renovacoes"

# connection table -> (connection type expression over NEW/OLD, reason columns)
CONNECTION_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "sessoes_whatsapp": ("'whatsapp'", ("motivo_desconexao", "ultimo_erro")),
    "conexoes_meta": ("'meta_lead_ads'", ("ultimo_erro",)),
    "config_conversions_api": ("'meta_conversions_api'", ("ultimo_erro",)),
    "conexoes_google": ("'google_calendar'", ("ultimo_erro",)),
    "conexoes_email": ("'email_' || r.tipo", ("ultimo_erro",)),
    "conexoes_instagram": ("'instagram_direct'", ("ultimo_erro",)),
}
# Tables the gauges read across tenants (SELECT only, through the definer).
GAUGE_READS = ("webhook_inbox", "conexoes_meta", "conexoes_email", "config_conversions_api")


def _record_function(table: str, kind: str, reasons: tuple[str, ...]) -> str:
    reason = ", ".join(f"NULLIF(r.{c}, '')" for c in reasons)
    removed = "r.deletado_em IS NOT NULL" if table != "config_conversions_api" else "false"
    old_removed = removed.replace("r.", "OLD.")
    return f"""
CREATE FUNCTION app_status_history_{table}() RETURNS trigger
LANGUAGE plpgsql {HEADER} AS $$
DECLARE
  r {table}%ROWTYPE;
  new_status text;
BEGIN
  IF TG_OP = 'DELETE' THEN
    r := OLD;
    new_status := 'removed';
  ELSE
    r := NEW;
    new_status := CASE WHEN {removed} THEN 'removed' ELSE r.status END;
    IF TG_OP = 'UPDATE' AND new_status IS NOT DISTINCT FROM
       (CASE WHEN {old_removed} THEN 'removed' ELSE OLD.status END) THEN
      RETURN NULL;
    END IF;
  END IF;
  INSERT INTO {HISTORY} (organizacao_id, tipo, conexao_id, status, motivo)
  VALUES (r.organizacao_id, {kind}, r.id, new_status, left(COALESCE({reason}), 500));
  RETURN NULL;
END
$$;"""


GAUGES = f"""
CREATE FUNCTION app_observability_gauges()
RETURNS TABLE(metric text, label_a text, label_b text, value double precision)
LANGUAGE sql STABLE {HEADER} AS $$
  SELECT 'queue_depth', e.operacao, e.status, count(*)::float8
    FROM eventos_pendentes e
   WHERE e.status IN ('pending', 'processing', 'failed')
   GROUP BY e.operacao, e.status
  UNION ALL
  SELECT 'queue_oldest_age', e.operacao, '',
         EXTRACT(EPOCH FROM now() - min(e.criado_em))::float8
    FROM eventos_pendentes e
   WHERE e.status = 'pending' AND e.proxima_tentativa <= now()
   GROUP BY e.operacao
  UNION ALL
  SELECT 'inbox_unprocessed', w.provider, '', count(*)::float8
    FROM webhook_inbox w
   WHERE w.verdict = 'accepted' AND w.processed_at IS NULL
   GROUP BY w.provider
  UNION ALL
  SELECT 'inbox_oldest_age', w.provider, '',
         EXTRACT(EPOCH FROM now() - min(w.received_at))::float8
    FROM webhook_inbox w
   WHERE w.verdict = 'accepted' AND w.processed_at IS NULL
   GROUP BY w.provider
  UNION ALL
  SELECT 'connections', h.tipo, h.status, count(*)::float8
    FROM (SELECT DISTINCT ON (organizacao_id, tipo, conexao_id) tipo, status
            FROM {HISTORY}
           ORDER BY organizacao_id, tipo, conexao_id, em DESC, id DESC) h
   WHERE h.status <> 'removed'
   GROUP BY h.tipo, h.status
  UNION ALL
  SELECT 'tokens_expiring', t.tipo, '', count(*)::float8
    FROM (SELECT 'meta_lead_ads' AS tipo, token_expires_at, status, deletado_em
            FROM conexoes_meta
          UNION ALL
          SELECT 'google_calendar', token_expires_at, status, deletado_em FROM conexoes_google
          UNION ALL
          SELECT 'email_' || tipo, token_expires_at, status, deletado_em FROM conexoes_email
          UNION ALL
          SELECT 'instagram_direct', token_expires_at, status, deletado_em
            FROM conexoes_instagram) t
   WHERE t.deletado_em IS NULL AND t.status = 'active'
     AND t.token_expires_at < now() + interval '7 days'
   GROUP BY t.tipo
  UNION ALL
  SELECT 'outbox_lag', '', '',
         COALESCE(EXTRACT(EPOCH FROM now() - min(e.criado_em)), 0)::float8
    FROM eventos_pendentes e
   WHERE e.operacao = 'outbound_webhook' AND e.status IN ('pending', 'processing')
$$;"""


def _tenant_table(table: str) -> None:
    op.execute(f"GRANT SELECT, INSERT ON {table} TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT ON {table} TO {DEFINER_ROLE}")
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    predicate = f"organizacao_id = {TENANT}"
    op.execute(
        f'CREATE POLICY "tenant_isolation" ON {table} USING ({predicate}) WITH CHECK ({predicate})'
    )
    op.execute(
        f'CREATE POLICY "definer_access" ON {table} TO {DEFINER_ROLE} '
        "USING (true) WITH CHECK (true)"
    )


def upgrade() -> None:
    op.create_table(
        HISTORY,
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("tipo", sa.String(length=40), nullable=False),
        sa.Column("conexao_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("motivo", sa.Text(), nullable=True),
        sa.Column(
            "em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{HISTORY}")),
    )
    op.create_index(
        "idx_conexoes_status_historico_conexao",
        HISTORY,
        ["organizacao_id", "tipo", "conexao_id", "em"],
    )
    op.create_table(
        REFRESHES,
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organizacao_id", sa.Uuid(), nullable=False),
        sa.Column("tipo", sa.String(length=40), nullable=False),
        sa.Column("conexao_id", sa.Uuid(), nullable=False),
        sa.Column("sucesso", sa.Boolean(), nullable=False),
        sa.Column("erro", sa.Text(), nullable=True),
        sa.Column(
            "em", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{REFRESHES}")),
    )
    op.create_index(
        "idx_tokens_renovacoes_org", REFRESHES, ["organizacao_id", "tipo", sa.text("em DESC")]
    )
    for table in (HISTORY, REFRESHES):
        _tenant_table(table)
    op.add_column("eventos_pendentes", sa.Column("request_id", sa.String(length=64)))
    op.add_column("eventos_pendentes", sa.Column("traceparent", sa.String(length=55)))

    for table in GAUGE_READS:
        op.execute(f"GRANT SELECT ON {table} TO {DEFINER_ROLE}")
        op.execute(f'CREATE POLICY "definer_read" ON {table} FOR SELECT TO {DEFINER_ROLE} '
                   "USING (true)")  # fmt: skip
    for table, (kind, reasons) in CONNECTION_TABLES.items():
        op.execute(_record_function(table, kind, reasons))
        op.execute(f"ALTER FUNCTION app_status_history_{table}() OWNER TO {DEFINER_ROLE}")
        op.execute(f"REVOKE ALL ON FUNCTION app_status_history_{table}() FROM PUBLIC")
        soft_delete = table != "config_conversions_api"
        # Only updates that name the status (or the soft-delete column) run the function:
        # counters and tokens updated on hot paths do not.
        columns = "status, deletado_em" if soft_delete else "status"
        op.execute(
            f"CREATE TRIGGER trg_{table}_status_history "
            f"AFTER INSERT OR DELETE OR UPDATE OF {columns} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION app_status_history_{table}()"
        )
        removed = "r.deletado_em IS NOT NULL" if soft_delete else "false"
        op.execute(
            f"INSERT INTO {HISTORY} (organizacao_id, tipo, conexao_id, status, motivo) "
            f"SELECT r.organizacao_id, {kind}, r.id, "
            f"CASE WHEN {removed} THEN 'removed' ELSE r.status END, 'baseline' FROM {table} r"
        )
    op.execute(GAUGES)
    op.execute(f"ALTER FUNCTION app_observability_gauges() OWNER TO {DEFINER_ROLE}")
    op.execute("REVOKE ALL ON FUNCTION app_observability_gauges() FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION app_observability_gauges() TO {APP_ROLE}")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS app_observability_gauges()")
    for table in CONNECTION_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_status_history ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS app_status_history_{table}()")
    for table in GAUGE_READS:
        op.execute(f'DROP POLICY IF EXISTS "definer_read" ON {table}')
        op.execute(f"REVOKE SELECT ON {table} FROM {DEFINER_ROLE}")
    op.drop_column("eventos_pendentes", "traceparent")
    op.drop_column("eventos_pendentes", "request_id")
    op.drop_table(REFRESHES)
    op.drop_table(HISTORY)
