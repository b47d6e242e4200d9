"""WAHA deliveries: one envelope per POST, for the tenant the URL and our records agree on."""

from __future__ import annotations

import uuid

from renove.conexoes.v1 import webhook_ingress_service_pb2 as pb

from server.ingress.answers import Outcome, answer, headers_of, parse, summary
from server.ingress.context import Ingress
from server.ingress.inbox import Recipient
from server.ingress.routes import WAHA, InboundEvent, Malformed, waha_events
from server.ingress.signatures import Check, verify_waha


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _recipient(
    recipients: list[Recipient], url_tenant: str, event: InboundEvent
) -> tuple[Recipient | None, str]:
    """The session's owner, only when the URL's tenant (and the envelope's metadata tenant,
    when WAHA echoes one) name that same owner: a URL alone is never trusted.
    """
    if not recipients:
        return None, WAHA.unknown_action
    tenant = _uuid(url_tenant)
    match = next((r for r in recipients if r.tenant_id == tenant), None)
    echoed = [t for t in event.facts.get("metadata_tenant_id", "").split(",") if t]
    if match is None or any(t != str(match.tenant_id) for t in echoed):
        return None, "webhook.tenant_mismatch"
    return match, ""


async def deliver(
    ingress: Ingress, request: pb.DeliverWahaWebhookRequest
) -> pb.DeliverWahaWebhookResponse:
    """Verify (HMAC-SHA512), parse, resolve the session, check the tenant, store."""
    raw = request.request
    key = (await ingress.platform("waha")).get("webhook_hmac_key")
    check = verify_waha(headers_of(raw), raw.body, key)
    if check is not Check.OK:
        return pb.DeliverWahaWebhookResponse(
            response=await ingress.refuse(WAHA, raw, check),
            outcome=Outcome.DELIVERY_OUTCOME_UNAUTHENTICATED,
        )
    try:
        (event,) = parse(raw, waha_events)
    except Malformed as exc:
        return pb.DeliverWahaWebhookResponse(
            response=answer(400, {"error": str(exc)}),
            outcome=Outcome.DELIVERY_OUTCOME_MALFORMED,
        )
    # Resolve, check and store in two round trips (inbox.resolve_and_accept).
    stored, action = await ingress.inbox.resolve_and_accept(
        WAHA, event, lambda found: _recipient(found, request.tenant_id, event), raw
    )
    if stored is None:
        details = {"session": event.lookup, "url_tenant_id": request.tenant_id[:64]}
        await ingress.inbox.audit(action, WAHA.provider, raw, details)
        return pb.DeliverWahaWebhookResponse(
            response=answer(403, {"error": action.removeprefix("webhook.")}),
            outcome=Outcome.DELIVERY_OUTCOME_UNKNOWN_RECIPIENT,
        )
    outcome, response = summary([stored], 0)
    return pb.DeliverWahaWebhookResponse(
        response=response, outcome=outcome, inbox_id=str(stored.inbox_id or "")
    )
