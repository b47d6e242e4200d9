"""Hot paths in one round trip: plpgsql functions that set the caller's settings, then work.

A unit of work costs BEGIN with the settings, the statement and COMMIT: three round trips for
a read of one row, each a wake-up of the backend on a busy core. These functions take the
caller's tenant, user and role as their first three parameters, set them transaction-locally
and then run their query, in that order (plpgsql runs its statements in sequence, which one
SQL statement would not promise). Called as a statement of its own outside any explicit
transaction, the call is its own transaction: the settings end with it, so a pooled
connection never carries them into the next use.

They run with the caller's rights (SECURITY INVOKER, the default), so row-level security
applies to every row they read or write exactly as in a unit of work.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from db.migrations.r0001.security import APP_ROLE

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SET_CALLER = """
  PERFORM set_config('app.current_tenant', p_tenant, true),
          set_config('app.current_user', p_user, true),
          set_config('app.current_role', p_role, true);"""

# GetWhatsAppStatus: the caller's live session and its owner's name (the outer join keeps a
# session whose owner row is not visible).
WHATSAPP_STATUS = f"""
CREATE OR REPLACE FUNCTION as_caller_whatsapp_status(p_tenant text, p_user text, p_role text,
                                                     p_usuario uuid)
RETURNS TABLE (sessao sessoes_whatsapp, owner_name text)
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
BEGIN{_SET_CALLER}
  RETURN QUERY
  SELECT s, u.nome::text
    FROM sessoes_whatsapp s
    LEFT JOIN usuarios u ON u.id = s.usuario_id
   WHERE s.usuario_id = p_usuario AND s.deletado_em IS NULL;
END
$$"""

# The permission check of a member on a granted RPC: the member's grants, read on every check.
MEMBER_GRANTS = f"""
CREATE OR REPLACE FUNCTION as_caller_member_grants(p_tenant text, p_user text, p_role text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
BEGIN{_SET_CALLER}
  RETURN (SELECT u.permissoes_conexoes FROM usuarios u
           WHERE u.id = NULLIF(p_user, '')::uuid);
END
$$"""

# A verified webhook for a resolved tenant: its inbox row and, when the row is new, its
# processing job, in the call's one transaction (a provider's retry of a stored event finds the
# row and enqueues nothing). Returns the new row's id, NULL for a duplicate. JSON travels as
# text so the call does not depend on the connection's JSON codec.
ACCEPT_WEBHOOK = f"""
CREATE OR REPLACE FUNCTION as_caller_accept_webhook(
  p_tenant text, p_user text, p_role text,
  p_provider text, p_event_id text, p_headers text, p_query text, p_body bytea,
  p_received_at timestamptz, p_operacao text, p_facts text, p_idempotency_key text,
  p_max_tentativas int, p_request_id text, p_traceparent text)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
DECLARE
  v_id uuid;
BEGIN{_SET_CALLER}
  INSERT INTO webhook_inbox (organizacao_id, provider, provider_event_id, headers, query, body,
                             verdict, received_at)
  VALUES (p_tenant::uuid, p_provider, p_event_id, p_headers::jsonb, p_query::jsonb, p_body,
          'accepted', COALESCE(p_received_at, now()))
  ON CONFLICT (provider, provider_event_id) DO NOTHING
  RETURNING id INTO v_id;
  IF v_id IS NOT NULL THEN
    INSERT INTO eventos_pendentes (organizacao_id, tipo, operacao, destino, payload,
                                   idempotency_key, max_tentativas, proxima_tentativa,
                                   request_id, traceparent)
    VALUES (p_tenant::uuid, p_operacao, p_operacao, '',
            jsonb_build_object('inbox_id', v_id::text) || p_facts::jsonb,
            p_idempotency_key, p_max_tentativas, now(), p_request_id, p_traceparent)
    ON CONFLICT (organizacao_id, idempotency_key) DO NOTHING;
  END IF;
  RETURN v_id;
END
$$"""

_FUNCTIONS = {
    "as_caller_whatsapp_status(text, text, text, uuid)": WHATSAPP_STATUS,
    "as_caller_member_grants(text, text, text)": MEMBER_GRANTS,
    "as_caller_accept_webhook(text, text, text, text, text, text, text, bytea, timestamptz,"
    " text, text, text, integer, text, text)": ACCEPT_WEBHOOK,
}


def upgrade() -> None:
    for signature, body in _FUNCTIONS.items():
        op.execute(body)
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {APP_ROLE}")


def downgrade() -> None:
    for signature in _FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
