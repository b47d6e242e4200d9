"""What a WhatsApp send leaves behind once WAHA took the message, in one statement.

The sender's session counts the message (`total_mensagens_enviadas`, `ultima_mensagem_em`),
the message row takes WAHA's id (keeping the one it was stored with when WAHA answers none)
and ack and becomes `sent`, and its MESSAGE_STATUS change is recorded on the change feed
and announced on the event bus by `record_and_announce_change` (migration 0026: the tenant's
next sequence, the outbox row, outbound webhook deliveries with the job's request id, and the
NOTIFY payload `server.events.Event` decodes), the one definition received.py's store uses
too. Each UPDATE locks its row as it writes it
(read-modify-write under the row lock, as a SELECT ... FOR UPDATE would); a message or session
that is gone leaves everything unchanged.
"""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from server.events import CHANNEL
from server.events.bus import MAX_PAYLOAD
from server.observability.jobs import enqueue_context
from server.outbox.record import DELIVERY_TIPO
from server.resilience.operations import OUTBOUND_WEBHOOK
from server.whatsapp.connection import CANAL

_SENT = """
WITH counted AS (
  UPDATE sessoes_whatsapp s
     SET total_mensagens_enviadas = COALESCE(s.total_mensagens_enviadas, 0) + 1,
         ultima_mensagem_em = $2
   WHERE s.id = $3 AND EXISTS (SELECT 1 FROM conversas WHERE id = $1)
  RETURNING s.id
), sent AS (
  UPDATE conversas m
     SET external_id = COALESCE($4, m.external_id),
         status = CASE WHEN m.status = 'pending' THEN 'sent' ELSE m.status END,
         ack = CASE WHEN $5::int IS NOT NULL AND (m.ack IS NULL OR $5::int > m.ack)
                    THEN $5::int ELSE m.ack END,
         enviado_em = $2
    FROM counted
   WHERE m.id = $1
  RETURNING m.id, m.organizacao_id, m.usuario_id, COALESCE(m.status, '') AS status
)
SELECT record_and_announce_change(
         $6, sent.organizacao_id, 'MESSAGE_STATUS', sent.usuario_id,
         json_build_object('canal', $7::text, 'id', CAST(sent.id AS text),
                           'status', sent.status)::text,
         $8, $9, $10, true, $12, $13, $11, $14)
  FROM sent
"""


async def record_sent(
    conn: asyncpg.Connection,
    *,
    message_id: uuid.UUID,
    session_id: uuid.UUID,
    external_id: str | None,
    ack: int | None,
    at: dt.datetime,
) -> int | None:
    """Records the send in `conn`'s transaction (a tenant's plain unit of work). Returns the
    change's sequence, or None when the message or its session is gone (nothing written)."""
    context = enqueue_context()  # the deliveries carry the job's request id and trace
    sequence: int | None = await conn.fetchval(
        _SENT,
        message_id,
        at,
        session_id,
        external_id or None,
        ack,
        uuid.uuid4(),
        CANAL,
        DELIVERY_TIPO,
        OUTBOUND_WEBHOOK.name,
        OUTBOUND_WEBHOOK.max_attempts,
        CHANNEL,
        context["request_id"],
        context["traceparent"],
        MAX_PAYLOAD,
    )
    return sequence
