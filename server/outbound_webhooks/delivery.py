"""Delivering one recorded change to one endpoint (the `outbound_webhook` job, tipo
`webhook_saida`, enqueued by server/outbox/record.py in the change's own transaction).

The body is the change as JSON with sorted keys, so every attempt sends the same bytes and
the same signature: `X-Renove-Signature: sha256=<hex HMAC-SHA256 of the raw body>` under the
endpoint's secret; `X-Renove-Event-Id` (the receiver deduplicates on it: delivery is at
least once) and `X-Renove-Sequence` (the tenant's change-feed order). A 2xx completes the
job; 408, 429, 5xx and network failures are retried with the `outbound_webhook` policy
(Retry-After honoured); any other answer fails at once; after the last attempt the job is
dead-lettered and an admin may retry or discard it like any job.

Deliveries to one endpoint go one at a time, in the tenant's feed order: a delivery waits,
postponed without spending an attempt, while an earlier one of its endpoint is pending or
running (retrying included); a dead-lettered one stops holding the others back. Migration
0019's triggers make a waiting delivery due the moment the one before it finishes.

The target is checked again before each delivery and the POST goes to the address that
check approved (server/outbound_webhooks/pinned.py): no second lookup a rebinding DNS
answer could turn towards a private address.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import ssl
import uuid
from typing import Any

from sqlalchemy import select, text

from db.models import OutboundWebhook, OutboxEvent
from server.bootstrap import Deps
from server.errors import CircuitOpen
from server.outbound_webhooks.endpoints import secret_context
from server.outbound_webhooks.pinned import post_pinned
from server.outbound_webhooks.targets import resolve_target
from server.providers.errors import ProviderError, ProviderRejected, ProviderServerError
from server.providers.http import parse_retry_after, translate_errors
from server.resilience.jobs import Job
from server.resilience.worker import tenant_service

_log = logging.getLogger(__name__)
PROVIDER = "outbound_webhook"
SIGNATURE_HEADER = "X-Renove-Signature"
USER_AGENT = "Renove-Conexoes-Webhooks/1.0"


class EarlierDeliveryPending(CircuitOpen):
    """An earlier change is still on its way to the endpoint: this one waits (postponed by
    the worker without spending an attempt, as an open circuit is)."""

    reason = "EARLIER_DELIVERY_PENDING"


_EARLIER = text(
    """
SELECT status, CASE WHEN status = 'pending' THEN proxima_tentativa ELSE lease_expires_at END
       AS free_at
  FROM eventos_pendentes
 WHERE operacao = 'outbound_webhook' AND status IN ('pending', 'processing')
   AND payload->>'endpoint_id' = :endpoint
   AND (payload->>'sequence')::bigint < :sequence
 ORDER BY (payload->>'sequence')::bigint
 LIMIT 1
"""
)
# How long a delivery waits at most before looking again (the triggers usually wake it first).
_MAX_WAIT_S = 60.0


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def body_of(row: OutboxEvent) -> bytes:
    document: dict[str, Any] = {
        "id": str(row.id),
        "sequence": row.sequencia,
        "kind": row.tipo,
        "organizacao_id": str(row.organizacao_id),
        "usuario_id": str(row.usuario_id) if row.usuario_id else None,
        "occurred_at": row.criado_em.isoformat(),
        "payload": row.payload or {},
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str).encode()


async def deliver(deps: Deps, job: Job, tls: ssl.SSLContext) -> None:
    """The `outbound_webhook` job handler (`tls`: how receivers' certificates are verified)."""
    endpoint_id = uuid.UUID(str(job.payload["endpoint_id"]))
    event_id = uuid.UUID(str(job.payload["event_id"]))
    async with deps.db.unit_of_work(tenant_service(job.tenant_id)) as session:
        endpoint = await session.scalar(
            select(OutboundWebhook).where(OutboundWebhook.id == endpoint_id)
        )
        event = await session.scalar(select(OutboxEvent).where(OutboxEvent.id == event_id))
        earlier = (
            await session.execute(
                _EARLIER,
                {"endpoint": str(endpoint_id), "sequence": int(job.payload.get("sequence", 0))},
            )
        ).one_or_none()
    if earlier is not None and endpoint is not None and endpoint.ativo:
        raise EarlierDeliveryPending(
            f"an earlier change is still {earlier.status} for this endpoint",
            retry_after=_wait(deps, earlier.free_at),
        )
    if endpoint is None or endpoint.deletado_em is not None or not endpoint.ativo:
        _log.info("webhook %s removed or inactive: delivery of %s dropped", endpoint_id, event_id)
        return
    if event is None:
        raise ProviderRejected(
            f"change {event_id} is past the feed's retention", provider=PROVIDER, retryable=False
        )
    target, problems = await resolve_target(
        endpoint.url,
        allow_private=deps.settings.webhook_allow_private_targets,
        nameservers=deps.settings.dns_nameservers,
    )
    if target is None:
        raise ProviderRejected(problems[0].description, provider=PROVIDER, retryable=False)
    secret = deps.keyring.decrypt(endpoint.segredo_encrypted, secret_context(job.tenant_id))
    body = body_of(event)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        SIGNATURE_HEADER: sign(secret, body),
        "X-Renove-Event-Id": str(event.id),
        "X-Renove-Sequence": str(event.sequencia),
        "X-Renove-Event": event.tipo,
        "X-Renove-Delivery-Attempt": str(job.attempt),
    }
    async with translate_errors(PROVIDER):
        response = await post_pinned(
            target, content=body, headers=headers, tls=tls, provider=PROVIDER
        )
    if not response.is_success:
        raise _failure(response.status_code, response.headers.get("retry-after"))


def _wait(deps: Deps, free_at: dt.datetime | None) -> float:
    if free_at is None:
        return 1.0
    return min(_MAX_WAIT_S, max(1.0, (free_at - deps.clock.now()).total_seconds()))


def _failure(status: int, retry_after: str | None) -> ProviderError:
    # Judged by the status alone: a receiver's error body means nothing to us.
    retryable = status in (408, 429) or status >= 500
    cls = ProviderServerError if retryable else ProviderRejected
    return cls(
        f"HTTP {status}",
        provider=PROVIDER,
        status_code=status,
        retryable=retryable,
        retry_after=parse_retry_after(retry_after),
    )
