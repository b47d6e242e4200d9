"""WebhookIngressService: the sidecar hands over raw provider requests; this decides the answer.

Order for every delivery: authenticate (signature or channel token) before trusting a byte,
then parse, then resolve the recipient from our own records, then store + enqueue (inbox.py),
and only then answer 200. What fails authentication is audited and never processed. A database
outage surfaces as UNAVAILABLE (the error interceptor, server/interceptors/outages.py) so the
sidecar answers 503 and the provider retries.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl

import grpc
from renove.conexoes.v1 import webhook_ingress_service_pb2 as pb
from renove.conexoes.v1 import webhook_ingress_service_pb2_grpc as pb_grpc

from server.bootstrap import Deps
from server.ingress.inbox import Inbox, Recipient, Stored
from server.ingress.routes import (
    GOOGLE_CALENDAR,
    INSTAGRAM,
    META_LEADGEN,
    WAHA,
    BodyExtractor,
    InboundEvent,
    Malformed,
    ProviderRoute,
    google_calendar_events,
    instagram_events,
    meta_leadgen_events,
    waha_events,
)
from server.ingress.signatures import (
    Check,
    header_map,
    subscription_challenge,
    verify_channel_token,
    verify_hub_signature,
    verify_waha,
)
from server.security.cipher import DecryptionError, SecretContext

Outcome = pb.DeliveryOutcome
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


def _answer(status: int, body: dict[str, Any]) -> pb.RawHttpResponse:
    return pb.RawHttpResponse(
        status_code=status,
        content_type=_JSON,
        body=json.dumps(body, separators=(",", ":")).encode(),
    )


def _headers(request: pb.RawHttpRequest) -> dict[str, str]:
    return header_map((h.name, h.value) for h in request.headers)


def _query(request: pb.RawHttpRequest) -> list[tuple[str, str]]:
    if request.query:
        return [(q.name, q.value) for q in request.query]
    return parse_qsl(request.raw_query, keep_blank_values=True)


def _parse(request: pb.RawHttpRequest, extract: BodyExtractor) -> list[InboundEvent]:
    try:
        body = json.loads(request.body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise Malformed("the body is not JSON") from exc
    return extract(body, request.body)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _summary(
    stored: Sequence[Stored], unknown: int
) -> tuple[pb.DeliveryOutcome.ValueType, pb.RawHttpResponse]:
    """The outcome and 200 answer of a delivery whose events were stored (or turned away)."""
    accepted = sum(1 for s in stored if s.tenant_id is not None and not s.duplicate)
    duplicates = sum(1 for s in stored if s.tenant_id is not None and s.duplicate)
    if accepted or not (duplicates or unknown):
        outcome, status = Outcome.DELIVERY_OUTCOME_ACCEPTED, "accepted"
    elif duplicates:
        outcome, status = Outcome.DELIVERY_OUTCOME_DUPLICATE, "duplicate"
    else:
        outcome, status = Outcome.DELIVERY_OUTCOME_UNKNOWN_RECIPIENT, "unknown_recipient"
    body = {"status": status, "accepted": accepted, "duplicates": duplicates, "unknown": unknown}
    return outcome, _answer(200, body)


def _waha_recipient(
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


class WebhookIngressServicer(pb_grpc.WebhookIngressServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.inbox = Inbox(deps.db)

    # --- WAHA ------------------------------------------------------------------------------

    async def DeliverWahaWebhook(
        self, request: pb.DeliverWahaWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeliverWahaWebhookResponse:
        raw = request.request
        key = (await self._platform("waha")).get("webhook_hmac_key")
        check = verify_waha(_headers(raw), raw.body, key)
        if check is not Check.OK:
            return pb.DeliverWahaWebhookResponse(
                response=await self._refuse(WAHA, raw, check),
                outcome=Outcome.DELIVERY_OUTCOME_UNAUTHENTICATED,
            )
        try:
            (event,) = _parse(raw, waha_events)
        except Malformed as exc:
            return pb.DeliverWahaWebhookResponse(
                response=_answer(400, {"error": str(exc)}),
                outcome=Outcome.DELIVERY_OUTCOME_MALFORMED,
            )
        # Resolve, check and store in one transaction (inbox.resolve_and_accept).
        stored, action = await self.inbox.resolve_and_accept(
            WAHA, event, lambda found: _waha_recipient(found, request.tenant_id, event), raw
        )
        if stored is None:
            details = {"session": event.lookup, "url_tenant_id": request.tenant_id[:64]}
            await self.inbox.audit(action, WAHA.provider, raw, details)
            return pb.DeliverWahaWebhookResponse(
                response=_answer(403, {"error": action.removeprefix("webhook.")}),
                outcome=Outcome.DELIVERY_OUTCOME_UNKNOWN_RECIPIENT,
            )
        outcome, response = _summary([stored], 0)
        return pb.DeliverWahaWebhookResponse(
            response=response, outcome=outcome, inbox_id=str(stored.inbox_id or "")
        )

    # --- Meta Lead Ads and Instagram ------------------------------------------------------------

    async def VerifyMetaLeadsWebhook(
        self, request: pb.VerifyMetaLeadsWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyMetaLeadsWebhookResponse:
        response, outcome = await self._handshake(request.request)
        return pb.VerifyMetaLeadsWebhookResponse(response=response, outcome=outcome)

    async def VerifyInstagramWebhook(
        self, request: pb.VerifyInstagramWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyInstagramWebhookResponse:
        response, outcome = await self._handshake(request.request)
        return pb.VerifyInstagramWebhookResponse(response=response, outcome=outcome)

    async def DeliverMetaLeadsWebhook(
        self, request: pb.DeliverMetaLeadsWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeliverMetaLeadsWebhookResponse:
        secret = (await self._platform("meta")).get("app_secret")
        outcome, response, ids = await self._deliver_batch(
            META_LEADGEN, request.request, [secret], meta_leadgen_events
        )
        return pb.DeliverMetaLeadsWebhookResponse(response=response, outcome=outcome, inbox_ids=ids)

    async def DeliverInstagramWebhook(
        self, request: pb.DeliverInstagramWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeliverInstagramWebhookResponse:
        # Which secret signs Instagram-Login webhooks is unverified (providers.md §2.2): the
        # Instagram app secret first, then the Meta app secret.
        secrets = [
            (await self._platform("instagram")).get("app_secret"),
            (await self._platform("meta")).get("app_secret"),
        ]
        outcome, response, ids = await self._deliver_batch(
            INSTAGRAM, request.request, secrets, instagram_events
        )
        return pb.DeliverInstagramWebhookResponse(response=response, outcome=outcome, inbox_ids=ids)

    async def _handshake(
        self, raw: pb.RawHttpRequest
    ) -> tuple[pb.RawHttpResponse, pb.DeliveryOutcome.ValueType]:
        verify_token = (await self._platform("meta")).get("verify_token")
        challenge = subscription_challenge(_query(raw), verify_token)
        if challenge is None:
            refused = pb.RawHttpResponse(status_code=403, content_type=_TEXT, body=b"forbidden")
            return refused, Outcome.DELIVERY_OUTCOME_VERIFICATION_FAILED
        answer = pb.RawHttpResponse(status_code=200, content_type=_TEXT, body=challenge.encode())
        return answer, Outcome.DELIVERY_OUTCOME_VERIFIED

    async def _deliver_batch(
        self,
        route: ProviderRoute,
        raw: pb.RawHttpRequest,
        secrets: Iterable[str | None],
        extract: BodyExtractor,
    ) -> tuple[pb.DeliveryOutcome.ValueType, pb.RawHttpResponse, list[str]]:
        """A Meta-style batch: events of several recipients (and tenants) in one POST.

        Unknown recipients are still answered 200 (Meta retries for 36 h and may disable the
        subscription otherwise) but stored as rejected, audited, and never processed.
        """
        headers = _headers(raw)
        checks = [verify_hub_signature(headers, raw.body, s) for s in secrets if s] or [
            verify_hub_signature(headers, raw.body, None)
        ]
        if Check.OK not in checks:
            check = Check.MISSING if Check.MISSING in checks else Check.INVALID
            refused = await self._refuse(route, raw, check)
            return Outcome.DELIVERY_OUTCOME_UNAUTHENTICATED, refused, []
        try:
            events = _parse(raw, extract)
        except Malformed as exc:
            return Outcome.DELIVERY_OUTCOME_MALFORMED, _answer(400, {"error": str(exc)}), []
        by_tenant: dict[uuid.UUID, list[tuple[InboundEvent, Recipient]]] = {}
        unknown: list[InboundEvent] = []
        resolved: dict[str, list[Recipient]] = {}
        for event in events:
            if event.lookup not in resolved:
                resolved[event.lookup] = await self.inbox.resolve(route, event.lookup)
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
            stored += await self.inbox.accept(route, tenant_id, items, raw)
        if unknown:
            await self.inbox.reject_unknown(route, unknown, raw)
        outcome, response = _summary(stored, len(unknown))
        ids = [str(s.inbox_id) for s in stored if s.inbox_id is not None]
        return outcome, response, ids

    # --- Google Calendar ------------------------------------------------------------------------

    async def DeliverGoogleCalendarWebhook(
        self, request: pb.DeliverGoogleCalendarWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeliverGoogleCalendarWebhookResponse:
        raw = request.request
        headers = _headers(raw)
        if not headers.get("x-goog-channel-token"):
            return pb.DeliverGoogleCalendarWebhookResponse(
                response=await self._refuse(GOOGLE_CALENDAR, raw, Check.MISSING),
                outcome=Outcome.DELIVERY_OUTCOME_UNAUTHENTICATED,
            )
        try:
            (event,) = google_calendar_events(headers)
        except Malformed as exc:
            return pb.DeliverGoogleCalendarWebhookResponse(
                response=_answer(400, {"error": str(exc)}),
                outcome=Outcome.DELIVERY_OUTCOME_MALFORMED,
            )
        recipients = await self.inbox.resolve(GOOGLE_CALENDAR, event.lookup)
        if not recipients:
            await self.inbox.audit(
                GOOGLE_CALENDAR.unknown_action, GOOGLE_CALENDAR.provider, raw,
                {"channel_id": event.lookup[:255]},
            )  # fmt: skip
            return pb.DeliverGoogleCalendarWebhookResponse(
                response=_answer(404, {"error": "unknown_channel"}),
                outcome=Outcome.DELIVERY_OUTCOME_UNKNOWN_RECIPIENT,
            )
        recipient = recipients[0]  # channel ids are unique (uq_conexoes_google_channel)
        check = verify_channel_token(headers, await self._channel_token(recipient))
        if check is not Check.OK:
            return pb.DeliverGoogleCalendarWebhookResponse(
                response=await self._refuse(GOOGLE_CALENDAR, raw, check),
                outcome=Outcome.DELIVERY_OUTCOME_UNAUTHENTICATED,
            )
        (stored,) = await self.inbox.accept(
            GOOGLE_CALENDAR, recipient.tenant_id, [(event, recipient)], raw
        )
        outcome, response = _summary([stored], 0)
        return pb.DeliverGoogleCalendarWebhookResponse(
            response=response, outcome=outcome, inbox_id=str(stored.inbox_id or "")
        )

    async def _channel_token(self, recipient: Recipient) -> str | None:
        """The channel's token in clear. Stored by the Google Calendar room encrypted under
        SecretContext("conexoes_google", "channel_token_encrypted", tenant).
        """
        sealed = await self.inbox.channel_token(recipient)
        if not sealed:
            return None
        context = SecretContext("conexoes_google", "channel_token_encrypted", recipient.tenant_id)
        try:
            return self.deps.keyring.decrypt(sealed, context)
        except DecryptionError:
            return None

    # --- shared ---------------------------------------------------------------------------------

    async def _platform(self, provider: str) -> dict[str, str]:
        return await self.deps.platform.current(self.deps.db, provider)

    async def _refuse(
        self, route: ProviderRoute, raw: pb.RawHttpRequest, check: Check
    ) -> pb.RawHttpResponse:
        """401 without a signature, 403 with a wrong one; audited, nothing stored."""
        await self.inbox.audit("webhook.rejected", route.provider, raw, {"reason": check.value})
        status = 401 if check is Check.MISSING else 403
        return _answer(status, {"error": check.value})


def register(server: grpc.aio.Server, deps: Deps) -> str:
    pb_grpc.add_WebhookIngressServiceServicer_to_server(WebhookIngressServicer(deps), server)
    return "renove.conexoes.v1.WebhookIngressService"
