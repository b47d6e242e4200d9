"""Meta-style deliveries (Lead Ads, Instagram): the handshake, and signed batches whose events
may belong to several recipients and tenants."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable

from renove.conexoes.v1 import webhook_ingress_service_pb2 as pb

from server.ingress.answers import TEXT, Outcome, answer, headers_of, parse, query_of, summary
from server.ingress.context import Ingress
from server.ingress.inbox import Recipient, Stored
from server.ingress.routes import BodyExtractor, InboundEvent, Malformed, ProviderRoute
from server.ingress.signatures import Check, subscription_challenge, verify_hub_signature


async def handshake(
    ingress: Ingress, raw: pb.RawHttpRequest
) -> tuple[pb.RawHttpResponse, pb.DeliveryOutcome.ValueType]:
    """Meta's subscription handshake: the challenge back when the verify token matches."""
    verify_token = (await ingress.platform("meta")).get("verify_token")
    challenge = subscription_challenge(query_of(raw), verify_token)
    if challenge is None:
        refused = pb.RawHttpResponse(status_code=403, content_type=TEXT, body=b"forbidden")
        return refused, Outcome.DELIVERY_OUTCOME_VERIFICATION_FAILED
    answer = pb.RawHttpResponse(status_code=200, content_type=TEXT, body=challenge.encode())
    return answer, Outcome.DELIVERY_OUTCOME_VERIFIED


async def deliver_batch(
    ingress: Ingress,
    route: ProviderRoute,
    raw: pb.RawHttpRequest,
    secrets: Iterable[str | None],
    extract: BodyExtractor,
) -> tuple[pb.DeliveryOutcome.ValueType, pb.RawHttpResponse, list[str]]:
    """A Meta-style batch: events of several recipients (and tenants) in one POST.

    Unknown recipients are still answered 200 (Meta retries for 36 h and may disable the
    subscription otherwise) but stored as rejected, audited, and never processed.
    """
    headers = headers_of(raw)
    checks = [verify_hub_signature(headers, raw.body, s) for s in secrets if s] or [
        verify_hub_signature(headers, raw.body, None)
    ]
    if Check.OK not in checks:
        check = Check.MISSING if Check.MISSING in checks else Check.INVALID
        refused = await ingress.refuse(route, raw, check)
        return Outcome.DELIVERY_OUTCOME_UNAUTHENTICATED, refused, []
    try:
        events = parse(raw, extract)
    except Malformed as exc:
        return Outcome.DELIVERY_OUTCOME_MALFORMED, answer(400, {"error": str(exc)}), []
    by_tenant: dict[uuid.UUID, list[tuple[InboundEvent, Recipient]]] = {}
    unknown: list[InboundEvent] = []
    resolved: dict[str, list[Recipient]] = {}
    for event in events:
        if event.lookup not in resolved:
            resolved[event.lookup] = await ingress.inbox.resolve(route, event.lookup)
        recipients = resolved[event.lookup]
        if not recipients:
            unknown.append(event)
        for recipient in recipients:
            mine = event
            if len(recipients) > 1:
                # One page serving several tenants: each keeps its own inbox row.
                mine = dataclasses.replace(
                    event, event_id=f"{event.event_id}@{recipient.tenant_id}"
                )
            by_tenant.setdefault(recipient.tenant_id, []).append((mine, recipient))
    stored: list[Stored] = []
    # One transaction per tenant; if a later one fails the provider's retry finds the
    # earlier ones stored (duplicates) and stores the rest.
    for tenant_id, items in by_tenant.items():
        stored += await ingress.inbox.accept(route, tenant_id, items, raw)
    if unknown:
        await ingress.inbox.reject_unknown(route, unknown, raw)
    outcome, response = summary(stored, len(unknown))
    ids = [str(s.inbox_id) for s in stored if s.inbox_id is not None]
    return outcome, response, ids
