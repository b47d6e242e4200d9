"""Google Calendar push notifications: headers only, authenticated by the channel's token."""

from __future__ import annotations

from renove.conexoes.v1 import webhook_ingress_service_pb2 as pb

from server.ingress.answers import Outcome, answer, headers_of, summary
from server.ingress.context import Ingress
from server.ingress.inbox import Recipient
from server.ingress.routes import GOOGLE_CALENDAR, Malformed, google_calendar_events
from server.ingress.signatures import Check, verify_channel_token
from server.security.cipher import DecryptionError, SecretContext


async def deliver(
    ingress: Ingress, request: pb.DeliverGoogleCalendarWebhookRequest
) -> pb.DeliverGoogleCalendarWebhookResponse:
    """No body and no signature: the channel id finds the recipient, its token proves it.

    An unknown channel and a wrong token get the same answer (403, counted like any refused
    webhook): a different one would tell a prober which channel ids exist.
    """
    raw = request.request
    headers = headers_of(raw)
    if not headers.get("x-goog-channel-token"):
        return pb.DeliverGoogleCalendarWebhookResponse(
            response=await ingress.refuse(GOOGLE_CALENDAR, raw, Check.MISSING),
            outcome=Outcome.DELIVERY_OUTCOME_UNAUTHENTICATED,
        )
    try:
        (event,) = google_calendar_events(headers)
    except Malformed as exc:
        return pb.DeliverGoogleCalendarWebhookResponse(
            response=answer(400, {"error": str(exc)}),
            outcome=Outcome.DELIVERY_OUTCOME_MALFORMED,
        )
    recipients = await ingress.inbox.resolve(GOOGLE_CALENDAR, event.lookup)
    # Channel ids are unique (uq_conexoes_google_channel); an unknown one has no token.
    stored_token = await _channel_token(ingress, recipients[0]) if recipients else None
    check = verify_channel_token(headers, stored_token) if recipients else Check.INVALID
    if check is not Check.OK:
        return pb.DeliverGoogleCalendarWebhookResponse(
            response=await ingress.refuse(GOOGLE_CALENDAR, raw, check),
            outcome=Outcome.DELIVERY_OUTCOME_UNAUTHENTICATED,
        )
    recipient = recipients[0]
    (stored,) = await ingress.inbox.accept(
        GOOGLE_CALENDAR, recipient.tenant_id, [(event, recipient)], raw
    )
    outcome, response = summary([stored], 0)
    return pb.DeliverGoogleCalendarWebhookResponse(
        response=response, outcome=outcome, inbox_id=str(stored.inbox_id or "")
    )


async def _channel_token(ingress: Ingress, recipient: Recipient) -> str | None:
    """The channel's token in clear. Stored by the Google Calendar room encrypted under
    SecretContext("conexoes_google", "channel_token_encrypted", tenant).
    """
    sealed = await ingress.inbox.channel_token(recipient)
    if not sealed:
        return None
    context = SecretContext("conexoes_google", "channel_token_encrypted", recipient.tenant_id)
    try:
        return ingress.deps.keyring.decrypt(sealed, context)
    except DecryptionError:
        return None
