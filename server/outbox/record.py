"""Recording a change for the CRM core: one call, in the transaction that makes the change.

`record_change` numbers the change with the tenant's next sequence, stores it in
`outbox_eventos`, enqueues its delivery to each of the tenant's outbound webhooks that wants
its kind, and announces it on the event bus (live `WatchEvents` streams) — all in the
caller's transaction, so the change, its record and its deliveries commit or vanish together.

Why sequences are gap-free in commit order: the tenant's counter row in `outbox_sequencias`
is updated (and so locked) until the transaction ends, so a second transaction of the same
tenant waits for the first to commit or roll back before taking the next number. A consumer
that saw sequence N therefore never later finds an N-1 it missed. The price is that the
tenant's recording transactions serialize from this call to their commit: call it as late
in the transaction as the change allows.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from server.events import CHANNEL, Event, publish
from server.events.bus import MAX_PAYLOAD
from server.observability.jobs import enqueue_context

# What the change feed carries (EventKind names): changes the CRM core must learn. Live-only
# kinds (QR rotations, circuit states, failed jobs) stay on the bus alone.
FEED_KINDS = frozenset(
    {
        "CONTACT_CHANGED",
        "OPPORTUNITY_CREATED",
        "MESSAGE_RECEIVED",
        "MESSAGE_STATUS",
        "CALENDAR_EVENT_CHANGED",
        "CONNECTION_CHANGED",
        "ALERT",
    }
)

# The `tipo` of the job (OUTBOUND_WEBHOOK, server/resilience/operations.py) that delivers one
# recorded change to one outbound webhook endpoint.
DELIVERY_TIPO = "webhook_saida"

# The record itself is the SQL function `record_outbox_change` (migration 0024), which
# `record_and_announce_change` (migration 0026: a WhatsApp send's result and a received
# message, server/whatsapp/) also calls: one definition.
_RECORD = text(
    "SELECT sequencia, criado_em, deliveries FROM record_outbox_change("
    ":id, :tenant, :kind, :user, CAST(:payload AS jsonb), :tipo, :operation, :attempts,"
    " :deliver, :request_id, :traceparent)"
)


@dataclass(frozen=True)
class RecordedChange:
    id: uuid.UUID
    sequence: int
    recorded_at: dt.datetime
    deliveries: int  # outbound webhook jobs enqueued


def _plain(payload: Mapping[str, Any]) -> dict[str, Any]:
    # JSON round trip: uuids, datetimes and decimals become strings, as consumers read them.
    plain: dict[str, Any] = json.loads(json.dumps(dict(payload), default=str))
    return plain


async def record_change(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    kind: str,
    payload: Mapping[str, Any],
    *,
    user_id: uuid.UUID | None = None,
    deliver: bool = True,
) -> RecordedChange:
    """Records a change for the CRM core in `session`'s transaction (see the module docstring).

    Args:
        kind: an EventKind name without its prefix ("CONTACT_CHANGED", "MESSAGE_RECEIVED").
        payload: the change's facts (ids, statuses); JSON-serialisable, never secrets.
        user_id: the user the change concerns (its owner), if any; streams filter on it.
        deliver: False keeps the change off outbound webhooks (still on the feed): for
            news about a failed webhook delivery itself, which would otherwise feed the
            failing endpoint a new delivery for each of its failures.
    """
    # Imported here: server.resilience's alerts record changes through this module.
    from server.resilience.operations import OUTBOUND_WEBHOOK

    if kind not in FEED_KINDS:
        raise ValueError(f"{kind!r} is not a change-feed kind")
    event_id = uuid.uuid4()
    data = _plain(payload)
    row = (
        await session.execute(
            _RECORD,
            {
                "id": event_id,
                "tenant": tenant_id,
                "kind": kind,
                "user": user_id,
                "payload": json.dumps(data),
                "tipo": DELIVERY_TIPO,
                "operation": OUTBOUND_WEBHOOK.name,
                "attempts": OUTBOUND_WEBHOOK.max_attempts,
                "deliver": deliver,
                # The recording call's request id and trace: a change and its deliveries
                # share them, like every job the call enqueues.
                **enqueue_context(),
            },
        )
    ).one()
    await publish(
        session,
        Event(
            kind,
            tenant_id,
            user_id,
            data,
            occurred_at=row.criado_em,
            id=str(event_id),
            sequence=int(row.sequencia),
        ),
    )
    return RecordedChange(event_id, int(row.sequencia), row.criado_em, int(row.deliveries))


def announced_change(kind: str, payload: Mapping[str, Any]) -> tuple[Any, ...]:
    """The arguments, after tenant and user, that the SQL function
    `record_and_announce_change` (migration 0026) and the functions calling it take to record
    a change and announce it on the bus: (id, kind, payload, delivery tipo, delivery
    operation, its attempts, request id, traceparent, channel, NOTIFY limit). The payload is
    the JSON text consumers read (`_plain`); the deliveries carry the current request id and
    trace."""
    from server.resilience.operations import OUTBOUND_WEBHOOK

    if kind not in FEED_KINDS:
        raise ValueError(f"{kind!r} is not a change-feed kind")
    context = enqueue_context()
    return (
        uuid.uuid4(),
        kind,
        json.dumps(_plain(payload)),
        DELIVERY_TIPO,
        OUTBOUND_WEBHOOK.name,
        OUTBOUND_WEBHOOK.max_attempts,
        context["request_id"],
        context["traceparent"],
        CHANNEL,
        MAX_PAYLOAD,
    )
