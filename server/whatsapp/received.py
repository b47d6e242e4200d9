"""A person's WhatsApp message (WAHA `message` and `message.any` events) stored in one plain
unit of work: the common case of the "waha_event" job (webhook.py) on the asyncpg connection
itself, without an ORM session.

The inbox row and its session are read and locked together; the contact is found or made
(`contact_for_phone_plain`); the message, the session's counters and the inbox mark are one
statement; the change is recorded and announced in one more (`record_change_plain`); the job
completes in the same transaction. The rows and events are the ones the general path writes
(inbound.py reads the payload and builds the event data for both).

Anything else returns False before anything is written, and webhook.py's general path takes
the event: an inbox row or session gone, an envelope that does not parse, names
another session or carries metadata contradicting our record, and a sender WhatsApp shows
only by a hidden id (hidden_senders.py).
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from server.auth.caller import Caller, Role
from server.outbox.record import record_change_plain
from server.resilience.jobs import Job
from server.whatsapp.connection import CANAL
from server.whatsapp.contacts import contact_for_phone_plain
from server.whatsapp.envelope import Envelope, metadata_mismatch
from server.whatsapp.inbound import incoming, message_event_data

if TYPE_CHECKING:
    from server.bootstrap import Deps

MESSAGE_EVENTS = frozenset({"message", "message.any"})

_READ = """
SELECT w.body, w.processed_at, now() AS agora,
       s.id AS sessao_id, s.organizacao_id, s.usuario_id, s.session_name
  FROM webhook_inbox w
  JOIN sessoes_whatsapp s ON s.session_name = $2 AND s.deletado_em IS NULL
 WHERE w.id = $1
   FOR UPDATE
"""
_MARK = "UPDATE webhook_inbox SET processed_at = $2 WHERE id = $1"
# The message (nothing on a repeat of its WAHA id), the session's counters when it is new,
# and the inbox row marked processed. Returns whether the message is new.
_STORE = """
WITH ins AS (
  INSERT INTO conversas (id, organizacao_id, canal, contato_id, usuario_id, direcao,
                         external_id, conteudo, tipo, status, ack, enviado_em, metadata,
                         criado_em)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14)
  ON CONFLICT (organizacao_id, canal, external_id) WHERE external_id IS NOT NULL DO NOTHING
  RETURNING id
), counted AS (
  UPDATE sessoes_whatsapp s
     SET total_mensagens_enviadas = COALESCE(s.total_mensagens_enviadas, 0)
                                    + CASE WHEN $6 = 'outbound' THEN 1 ELSE 0 END,
         total_mensagens_recebidas = COALESCE(s.total_mensagens_recebidas, 0)
                                     + CASE WHEN $6 = 'outbound' THEN 0 ELSE 1 END,
         ultima_mensagem_em = GREATEST(s.ultima_mensagem_em, $12)
   WHERE s.id = $15 AND EXISTS (SELECT 1 FROM ins)
), marked AS (
  UPDATE webhook_inbox SET processed_at = $16 WHERE id = $17
)
SELECT EXISTS (SELECT 1 FROM ins)
"""


async def store_received(deps: Deps, job: Job) -> bool:
    """Stores the job's message event; False when the general path must take it."""
    inbox_id = uuid.UUID(str(job.payload["inbox_id"]))
    session_name = job.payload.get("session")
    if job.payload.get("event") not in MESSAGE_EVENTS or not isinstance(session_name, str):
        return False
    caller = Caller(role=Role.SERVICE, tenant_id=job.tenant_id)
    async with deps.db.plain_unit_of_work(caller) as pg:
        with deps.db.statement_span("SELECT"):
            found = await pg.fetchrow(_READ, inbox_id, session_name)
        if found is None:
            return False
        if found["processed_at"] is not None:
            return True  # a repeat of a job that stored it: nothing left to do
        envelope = Envelope.parse(bytes(found["body"]))
        ids = {"organizacao_id": found["organizacao_id"], "usuario_id": found["usuario_id"]}
        if (
            envelope is None
            or envelope.event not in MESSAGE_EVENTS
            or envelope.session != found["session_name"]
            or metadata_mismatch(envelope, ids) is not None
        ):
            return False
        msg = incoming(envelope.payload, via_any=envelope.event == "message.any")
        if msg is not None and msg.lid is not None:
            return False
        processed_at = deps.clock.now()
        if msg is None:  # ours (stored by the send) or not a person's: only the mark
            await pg.execute(_MARK, inbox_id, processed_at)
        else:
            assert msg.phone is not None
            tenant, owner = found["organizacao_id"], found["usuario_id"]
            contato_id = await contact_for_phone_plain(
                pg, tenant, msg.phone, name=msg.name, owner=owner
            )
            row = msg.row(
                id=uuid.uuid4(),
                organizacao_id=tenant,
                contato_id=contato_id,
                usuario_id=owner,
                criado_em=found["agora"],  # now() of this transaction, the column's default
            )
            args: list[Any] = [
                row.id, tenant, CANAL, contato_id, owner, row.direcao, row.external_id,
                row.conteudo, row.tipo, row.status, row.ack, row.enviado_em,
                json.dumps(row.metadata_), row.criado_em, found["sessao_id"], processed_at,
                inbox_id,
            ]  # fmt: skip
            with deps.db.statement_span("INSERT"):
                stored = await pg.fetchval(_STORE, *args)
            if stored:
                await record_change_plain(
                    pg, tenant, msg.kind, message_event_data(row), user_id=owner
                )
        if job.completion is not None:
            await job.complete_within(pg)
    return True
