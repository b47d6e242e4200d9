"""Outbound webhook deliveries in feed order, one at a time per endpoint.

A delivery (`eventos_pendentes`, operacao `outbound_webhook`) waits while an earlier one of
its endpoint is pending or running (the handler postpones itself, spending no attempt). Two
triggers make the wait end as soon as it may, without a lost wake-up, under a per-endpoint
transaction lock:
- `webhook_saida_next`: when a delivery leaves pending/processing (completed, dead-lettered),
  the endpoint's earliest waiting delivery is due now.
- `webhook_saida_postponed`: a delivery postponed behind one that has finished since is due now.
An index finds a delivery's earlier ones by endpoint and sequence.

Revision ID: 0019
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIVE = "status IN ('pending', 'processing')"
_SEQ = "((payload->>'sequence')::bigint)"

STATEMENTS: tuple[str, ...] = (
    f"""CREATE INDEX ix_eventos_pendentes_webhook_order
  ON eventos_pendentes (organizacao_id, (payload->>'endpoint_id'), {_SEQ})
  WHERE operacao = 'outbound_webhook' AND {_ACTIVE}""",
    f"""
CREATE FUNCTION webhook_saida_next() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  head eventos_pendentes%ROWTYPE;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('webhook_saida:' || (OLD.payload->>'endpoint_id')));
  SELECT * INTO head FROM eventos_pendentes
   WHERE organizacao_id = OLD.organizacao_id AND operacao = 'outbound_webhook' AND {_ACTIVE}
     AND payload->>'endpoint_id' = OLD.payload->>'endpoint_id'
   ORDER BY {_SEQ} LIMIT 1;
  IF FOUND AND head.status = 'pending' AND head.proxima_tentativa > now() THEN
    UPDATE eventos_pendentes SET proxima_tentativa = now() WHERE id = head.id;
    PERFORM pg_notify('conexoes_jobs', 'outbound_webhook');
  END IF;
  RETURN NULL;
END $$""",
    f"""CREATE TRIGGER trg_webhook_next AFTER UPDATE OF status ON eventos_pendentes
  FOR EACH ROW
  WHEN (OLD.operacao = 'outbound_webhook' AND OLD.{_ACTIVE}
        AND NEW.status NOT IN ('pending', 'processing'))
  EXECUTE FUNCTION webhook_saida_next()""",
    f"""
CREATE FUNCTION webhook_saida_postponed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('webhook_saida:' || (NEW.payload->>'endpoint_id')));
  IF NOT EXISTS (
    SELECT 1 FROM eventos_pendentes
     WHERE organizacao_id = NEW.organizacao_id AND operacao = 'outbound_webhook' AND {_ACTIVE}
       AND payload->>'endpoint_id' = NEW.payload->>'endpoint_id'
       AND {_SEQ} < (NEW.payload->>'sequence')::bigint AND id <> NEW.id
  ) THEN
    NEW.proxima_tentativa := LEAST(NEW.proxima_tentativa, now());
  END IF;
  RETURN NEW;
END $$""",
    """CREATE TRIGGER trg_webhook_postponed BEFORE UPDATE OF status ON eventos_pendentes
  FOR EACH ROW
  WHEN (OLD.operacao = 'outbound_webhook' AND OLD.status = 'processing'
        AND NEW.status = 'pending' AND NEW.tentativas = OLD.tentativas)
  EXECUTE FUNCTION webhook_saida_postponed()""",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS trg_webhook_postponed ON eventos_pendentes")
    op.execute("DROP TRIGGER IF EXISTS trg_webhook_next ON eventos_pendentes")
    op.execute("DROP FUNCTION IF EXISTS webhook_saida_postponed()")
    op.execute("DROP FUNCTION IF EXISTS webhook_saida_next()")
    op.execute("DROP INDEX IF EXISTS ix_eventos_pendentes_webhook_order")
