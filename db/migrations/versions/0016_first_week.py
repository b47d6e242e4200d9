"""Members kept apart in `conversas` by row-level security, the webhook inbox's retention, and
WhatsApp senders known only by a hidden id.

- `conversas`: the `user_own_connection` policy of the personal tables (RESTRICTIVE), so a
  member reaches only the messages of their own connections even if a query forgets to say so.
- `app_purge_webhook_inbox(interval)`: deletes, across tenants, inbox rows older than the
  retention whose processing is over (processed, turned away, or no job of theirs still
  pending): an accepted delivery is never deleted before it was handled.
- `contatos.whatsapp_lid`: the `...@lid` id of a WhatsApp sender, unique per tenant among
  live contacts, so messages of a sender whose phone is hidden land on one contact.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.migrations.r0001.security import APP_ROLE, DEFINER_ROLE, ROLE, USER

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HEADER = "SECURITY DEFINER SET search_path = public, pg_temp"
SIGNATURE = "app_purge_webhook_inbox(interval)"
PURGE_INBOX = f"""
CREATE FUNCTION app_purge_webhook_inbox(p_older_than interval)
RETURNS bigint
LANGUAGE plpgsql VOLATILE {HEADER} AS $$
DECLARE
  n_removed bigint;
BEGIN
  DELETE FROM webhook_inbox w
   WHERE w.received_at < now() - p_older_than
     AND (w.processed_at IS NOT NULL
          OR w.verdict <> 'accepted'
          OR NOT EXISTS (
            SELECT 1 FROM eventos_pendentes e
             WHERE e.organizacao_id = w.organizacao_id
               AND e.status IN ('pending', 'processing')
               AND e.payload->>'inbox_id' = w.id::text));
  GET DIAGNOSTICS n_removed = ROW_COUNT;
  RETURN n_removed;
END
$$;"""


def upgrade() -> None:
    op.add_column("contatos", sa.Column("whatsapp_lid", sa.String(64), nullable=True))
    op.create_index(
        "uq_contatos_whatsapp_lid",
        "contatos",
        ["organizacao_id", "whatsapp_lid"],
        unique=True,
        postgresql_where=sa.text("whatsapp_lid IS NOT NULL AND deletado_em IS NULL"),
    )
    own = f"usuario_id = {USER} OR {ROLE} IN ('admin', 'super_admin', 'service')"
    op.execute(
        f'CREATE POLICY "user_own_connection" ON conversas AS RESTRICTIVE TO {APP_ROLE} '
        f"USING ({own}) WITH CHECK ({own})"
    )
    op.execute(f"GRANT SELECT, DELETE ON webhook_inbox TO {DEFINER_ROLE}")
    op.execute(
        f'CREATE POLICY "definer_access" ON webhook_inbox TO {DEFINER_ROLE} '
        "USING (true) WITH CHECK (true)"
    )
    op.execute(PURGE_INBOX)
    op.execute(f"ALTER FUNCTION {SIGNATURE} OWNER TO {DEFINER_ROLE}")
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO {APP_ROLE}")


def downgrade() -> None:
    op.drop_index("uq_contatos_whatsapp_lid", table_name="contatos")
    op.drop_column("contatos", "whatsapp_lid")
    op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
    op.execute('DROP POLICY IF EXISTS "definer_access" ON webhook_inbox')
    op.execute(f"REVOKE SELECT, DELETE ON webhook_inbox FROM {DEFINER_ROLE}")
    op.execute('DROP POLICY IF EXISTS "user_own_connection" ON conversas')
