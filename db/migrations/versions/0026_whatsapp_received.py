"""A person's WhatsApp message in two round trips instead of seven.

The "waha_event" job's common case (server/whatsapp/received.py) read the inbox row and its
session, found or made the contact, stored the message, recorded its change and completed
the job, each a statement of its own between BEGIN and COMMIT: seven wake-ups of the backend
on a busy core for one message. These functions do the same work in two calls, each its own
transaction (called outside any explicit one), in the manner of migration 0025: the first
three parameters are the caller's tenant, user and role, set transaction-locally before
anything is read, and the functions run with the caller's rights, so row-level security
applies as in a unit of work.

- `as_caller_whatsapp_inbox`: the inbox row's body and state and the live session it names.
  The envelope is parsed in Python between this read and the store.
- `as_caller_whatsapp_store_message`: with the inbox row and its session locked (in the
  order the other writers of a session's messages take them), and only while the row is not
  yet processed: the contact found or made (its CONTACT_CHANGED recorded when made), the
  message (nothing on a repeat of its WAHA id), the session's counters and the message's
  change recorded and announced when it is new, the inbox row marked, and the job completed
  under its lease. One transaction, so one commit (and one WAL flush) for all of it.
- `record_and_announce_change`: a change recorded on the feed (`record_outbox_change`,
  migration 0024) and announced on the event bus with the payload `server.events.Event`
  decodes, cut to its data-less form when it would not fit NOTIFY's limit.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from alembic import op

from db.migrations.r0001.security import APP_ROLE

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The first statement of every as_caller_* function: the caller's settings, transaction-local.
_SET_CALLER: str = importlib.import_module("db.migrations.versions.0025_hot_reads")._SET_CALLER

RECORD_AND_ANNOUNCE = """
CREATE OR REPLACE FUNCTION record_and_announce_change(
  p_id uuid, p_tenant uuid, p_kind text, p_user uuid, p_payload text, p_tipo text,
  p_operation text, p_attempts int, p_deliver boolean, p_request_id text, p_traceparent text,
  p_channel text, p_max_payload int)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, pg_temp AS $$
DECLARE
  v_seq bigint;
  v_at timestamptz;
  v_body text;
BEGIN
  SELECT r.sequencia, r.criado_em INTO v_seq, v_at
    FROM record_outbox_change(p_id, p_tenant, p_kind, p_user, p_payload::jsonb, p_tipo,
                              p_operation, p_attempts, p_deliver, p_request_id,
                              p_traceparent) AS r;
  v_body := json_build_object('id', p_id::text, 'kind', p_kind, 'tenant', p_tenant::text,
                              'user', p_user::text, 'at', v_at, 'data', p_payload::json,
                              'seq', v_seq)::text;
  IF octet_length(v_body) > p_max_payload THEN
    v_body := json_build_object('id', p_id::text, 'kind', p_kind, 'tenant', p_tenant::text,
                                'user', p_user::text, 'at', v_at, 'data', '{}'::json,
                                'seq', v_seq, 'partial', true)::text;
  END IF;
  PERFORM pg_notify(p_channel, v_body);
  RETURN v_seq;
END
$$"""

WHATSAPP_INBOX = f"""
CREATE OR REPLACE FUNCTION as_caller_whatsapp_inbox(p_tenant text, p_user text, p_role text,
                                                    p_inbox uuid, p_session text)
RETURNS TABLE (body bytea, processed_at timestamptz, agora timestamptz, sessao_id uuid,
               organizacao_id uuid, usuario_id uuid, session_name text)
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
BEGIN{_SET_CALLER}
  RETURN QUERY
  SELECT w.body, w.processed_at, now(), s.id, s.organizacao_id, s.usuario_id,
         s.session_name::text
    FROM webhook_inbox w
    JOIN sessoes_whatsapp s ON s.session_name = p_session AND s.deletado_em IS NULL
   WHERE w.id = p_inbox;
END
$$"""

WHATSAPP_STORE_MESSAGE = f"""
CREATE OR REPLACE FUNCTION as_caller_whatsapp_store_message(
  p_tenant text, p_user text, p_role text,
  p_inbox uuid, p_processed_at timestamptz, p_session uuid,
  p_contato uuid, p_phone text, p_name text, p_contact_change uuid, p_contact_payload text,
  p_id uuid, p_canal text, p_usuario uuid, p_direcao text,
  p_external_id text, p_conteudo text, p_tipo_msg text, p_status text, p_ack int,
  p_enviado_em timestamptz, p_metadata text, p_criado_em timestamptz,
  p_change_id uuid, p_kind text, p_payload text, p_tipo text, p_operation text,
  p_attempts int, p_request_id text, p_traceparent text, p_channel text, p_max_payload int,
  p_job uuid, p_worker text, p_attempt int, p_max int)
RETURNS TABLE (stored boolean, completed boolean)
LANGUAGE plpgsql VOLATILE SET search_path = public, pg_temp AS $$
DECLARE
  v_done timestamptz;
  v_found boolean;
  v_new uuid;
  v_contato uuid;
  v_payload text := p_payload;
BEGIN{_SET_CALLER}
  -- The inbox row and its session locked first, as every writer of a session's messages
  -- does (the general path, a send's result): the session before the tenant's change-feed
  -- counter, which a new contact's change takes.
  SELECT w.processed_at, true INTO v_done, v_found
    FROM webhook_inbox w
    JOIN sessoes_whatsapp s ON s.id = p_session
   WHERE w.id = p_inbox
     FOR UPDATE;
  IF v_found IS NULL THEN
    RETURN NEXT;  -- gone since the read: (NULL, NULL), the general path takes the event
    RETURN;
  END IF;
  IF v_done IS NULL THEN
    IF p_id IS NOT NULL THEN
      -- The contact: made with p_contato (its change recorded) or the live one it meets,
      -- read by a statement of its own, which sees one committed after the insert began.
      INSERT INTO contatos (id, organizacao_id, telefone, nome, origem, owner_id)
      VALUES (p_contato, p_tenant::uuid, p_phone, p_name, 'whatsapp', p_usuario)
      ON CONFLICT (organizacao_id, telefone) WHERE telefone IS NOT NULL AND deletado_em IS NULL
      DO NOTHING
      RETURNING id INTO v_contato;
      IF v_contato IS NOT NULL THEN
        PERFORM record_and_announce_change(p_contact_change, p_tenant::uuid, 'CONTACT_CHANGED',
                                           p_usuario, p_contact_payload, p_tipo, p_operation,
                                           p_attempts, true, p_request_id, p_traceparent,
                                           p_channel, p_max_payload);
      ELSE
        SELECT c.id INTO v_contato
          FROM contatos c WHERE c.telefone = p_phone AND c.deletado_em IS NULL;
        -- The message's event names the contact it met, not the one it would have made.
        v_payload := jsonb_set(jsonb_set(p_payload::jsonb, '{{contato_id}}',
                                         to_jsonb(v_contato::text)),
                               '{{message,contato_id}}', to_jsonb(v_contato::text))::text;
      END IF;
      INSERT INTO conversas (id, organizacao_id, canal, contato_id, usuario_id, direcao,
                             external_id, conteudo, tipo, status, ack, enviado_em, metadata,
                             criado_em)
      VALUES (p_id, p_tenant::uuid, p_canal, v_contato, p_usuario, p_direcao, p_external_id,
              p_conteudo, p_tipo_msg, p_status, p_ack, p_enviado_em, p_metadata::jsonb,
              p_criado_em)
      ON CONFLICT (organizacao_id, canal, external_id) WHERE external_id IS NOT NULL
      DO NOTHING
      RETURNING id INTO v_new;
    END IF;
    IF v_new IS NOT NULL THEN
      UPDATE sessoes_whatsapp s
         SET total_mensagens_enviadas = COALESCE(s.total_mensagens_enviadas, 0)
                                        + CASE WHEN p_direcao = 'outbound' THEN 1 ELSE 0 END,
             total_mensagens_recebidas = COALESCE(s.total_mensagens_recebidas, 0)
                                         + CASE WHEN p_direcao = 'outbound' THEN 0 ELSE 1 END,
             ultima_mensagem_em = GREATEST(s.ultima_mensagem_em, p_enviado_em)
       WHERE s.id = p_session;
      PERFORM record_and_announce_change(p_change_id, p_tenant::uuid, p_kind, p_usuario,
                                         v_payload, p_tipo, p_operation, p_attempts, true,
                                         p_request_id, p_traceparent, p_channel,
                                         p_max_payload);
    END IF;
    UPDATE webhook_inbox SET processed_at = p_processed_at WHERE id = p_inbox;
  END IF;
  stored := v_new IS NOT NULL;
  completed := CASE WHEN p_job IS NULL THEN NULL
                    ELSE app_complete_job(p_job, p_worker, p_attempt, p_max) END;
  RETURN NEXT;
END
$$"""

_FUNCTIONS = {
    "record_and_announce_change(uuid, uuid, text, uuid, text, text, text, integer, boolean,"
    " text, text, text, integer)": RECORD_AND_ANNOUNCE,
    "as_caller_whatsapp_inbox(text, text, text, uuid, text)": WHATSAPP_INBOX,
    "as_caller_whatsapp_store_message(text, text, text, uuid, timestamptz, uuid, uuid, text,"
    " text, uuid, text, uuid, text, uuid, text, text, text, text, text, integer, timestamptz,"
    " text, timestamptz, uuid, text, text, text, text, integer, text, text, text, integer, uuid,"
    " text, integer, integer)": WHATSAPP_STORE_MESSAGE,
}


def upgrade() -> None:
    for signature, body in _FUNCTIONS.items():
        op.execute(body)
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {APP_ROLE}")


def downgrade() -> None:
    for signature in reversed(_FUNCTIONS):
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
