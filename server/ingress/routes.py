"""Per-provider webhook facts as data: inbox name, job operation, how the recipient is resolved,
and how a parsed delivery splits into events (each with the provider's own id for dedupe).

The extractors are pure: they see the parsed body (or headers) and return `InboundEvent`s, or
raise `Malformed` (answered 400). IDs are kept as strings: Meta's leadgen ids are JSON numbers
beyond 2^53 (docs/providers.md, rules), which Python's json keeps exact as int.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from server.resilience import operations
from server.resilience.operations import Operation

# webhook_inbox.provider_event_id is VARCHAR(255).
_MAX_EVENT_ID = 255


class Malformed(ValueError):
    """The body cannot be read as the provider's payload."""


@dataclass(frozen=True)
class InboundEvent:
    """One event of a delivery.

    event_id: the provider's id for it (inbox dedupe key; also the job's idempotency key).
    lookup: what names the recipient in our records (session name, page id, IG user id, channel).
    facts: small string facts copied into the job payload for the handler.
    """

    event_id: str
    lookup: str
    facts: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderRoute:
    """How one provider's deliveries are stored and processed."""

    provider: str  # webhook_inbox.provider and the idempotency-key prefix
    operation: Operation  # the job each event becomes (its policy sets the attempts)
    resolver: str  # SECURITY DEFINER function: lookup -> (organizacao_id, <ids>...)
    resolver_ids: tuple[str, ...]  # the resolver's extra columns, copied into the job payload
    unknown_action: str  # audit action when the lookup names nothing of ours


WAHA = ProviderRoute(
    provider="waha",
    operation=operations.WAHA_EVENT,
    resolver="app_resolve_whatsapp_session",
    resolver_ids=("usuario_id", "sessao_id"),
    unknown_action="webhook.unknown_session",
)
META_LEADGEN = ProviderRoute(
    provider="meta_leadgen",
    operation=operations.META_LEADGEN,
    resolver="app_resolve_meta_page",
    resolver_ids=("pagina_id",),
    unknown_action="webhook.unknown_page",
)
INSTAGRAM = ProviderRoute(
    provider="instagram",
    operation=operations.INSTAGRAM_EVENT,
    resolver="app_resolve_instagram_account",
    resolver_ids=("conexao_id",),
    unknown_action="webhook.unknown_account",
)
GOOGLE_CALENDAR = ProviderRoute(
    provider="google_calendar",
    operation=operations.GOOGLE_CALENDAR_NOTIFICATION,
    resolver="app_resolve_google_channel",
    resolver_ids=("usuario_id", "conexao_id"),
    unknown_action="webhook.unknown_channel",
)


def _id(value: Any) -> str:
    """An external id as text; bool is rejected (json true is not an id)."""
    if value is None or isinstance(value, bool | dict | list):
        return ""
    return str(value).strip()


def _bounded(event_id: str) -> str:
    if len(event_id) <= _MAX_EVENT_ID:
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(f"{what} is not a JSON object")
    return value


def _field(item: dict[str, Any], name: str, key: str) -> Any:
    inner = item.get(name)
    return inner.get(key) if isinstance(inner, dict) else None


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed(f"{what} is not a JSON array")
    return value


def waha_events(body: Any, raw: bytes) -> list[InboundEvent]:
    """One WAHA envelope (docs/providers.md, WAHA). Dedupe on `id`; older servers omit it, then
    (session, event, payload.id, payload.ack), then the body's hash (a retry resends it as is).
    """
    envelope = _object(body, "the WAHA envelope")
    session = _id(envelope.get("session"))
    event = _id(envelope.get("event"))
    if not session or not event:
        raise Malformed("the WAHA envelope needs 'session' and 'event'")
    payload = envelope.get("payload")
    payload = payload if isinstance(payload, dict) else {}
    event_id = _id(envelope.get("id"))
    if not event_id:
        message_id = _id(payload.get("id"))
        if message_id:
            event_id = f"{session}:{event}:{message_id}:{_id(payload.get('ack'))}"
        else:
            event_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    facts = {"event": event, "session": session}
    metadata = envelope.get("metadata")
    if isinstance(metadata, dict):
        # The WhatsApp room writes organizacao_id; the WAHA documentation's example uses tenant_id.
        echoed = {_id(metadata.get(k)) for k in ("organizacao_id", "tenant_id")} - {""}
        if echoed:
            facts["metadata_tenant_id"] = ",".join(sorted(echoed))
    return [InboundEvent(_bounded(event_id), session, facts)]


_LEADGEN_FACTS = ("form_id", "ad_id", "adgroup_id", "created_time")


def meta_leadgen_events(body: Any, raw: bytes) -> list[InboundEvent]:
    """Every `leadgen` change of a Page notification (docs/providers.md, Meta Lead Ads);
    other fields skipped."""
    root = _object(body, "the notification")
    events: list[InboundEvent] = []
    for entry in _list(root.get("entry"), "entry"):
        entry = _object(entry, "entry[]")
        for change in _list(entry.get("changes"), "entry[].changes"):
            change = _object(change, "entry[].changes[]")
            if change.get("field") != "leadgen":
                continue
            value = _object(change.get("value"), "changes[].value")
            leadgen_id = _id(value.get("leadgen_id"))
            page_id = _id(value.get("page_id")) or _id(entry.get("id"))
            if not leadgen_id or not page_id:
                raise Malformed("a leadgen change needs leadgen_id and page_id")
            facts = {"leadgen_id": leadgen_id, "page_id": page_id}
            facts.update({k: _id(value.get(k)) for k in _LEADGEN_FACTS if _id(value.get(k))})
            events.append(InboundEvent(_bounded(leadgen_id), page_id, facts))
    return events


# Messaging items other than messages carry their own kind's object (read, reaction, ...).
_MESSAGING_KINDS = ("message", "reaction", "read", "postback", "referral", "message_edit")


def instagram_events(body: Any, raw: bytes) -> list[InboundEvent]:
    """Every messaging item of an Instagram notification (docs/providers.md, Instagram);
    dedupe on `mid`.

    The account is the entry's id (our professional account, also for echoes, where the
    recipient is the customer), falling back to the recipient.
    """
    root = _object(body, "the notification")
    events: list[InboundEvent] = []
    for entry in _list(root.get("entry"), "entry"):
        entry = _object(entry, "entry[]")
        for item in _list(entry.get("messaging"), "entry[].messaging"):
            item = _object(item, "entry[].messaging[]")
            sender = _id(_field(item, "sender", "id"))
            recipient = _id(_field(item, "recipient", "id"))
            account = _id(entry.get("id")) or recipient
            kind = next((k for k in _MESSAGING_KINDS if isinstance(item.get(k), dict)), "other")
            mid = _id(_field(item, kind, "mid"))
            timestamp = _id(item.get("timestamp"))
            if kind == "message" and mid:
                event_id = mid
            else:
                event_id = f"{kind}:{mid}:{sender}:{recipient}:{timestamp}"
            if not account:
                raise Malformed("a messaging item names no account")
            facts = {"kind": kind, "account_id": account, "sender_id": sender}
            if mid:
                facts["mid"] = mid
            if _field(item, kind, "is_echo") is True:
                facts["is_echo"] = "true"
            events.append(InboundEvent(_bounded(event_id), account, facts))
    return events


def google_calendar_events(headers: Mapping[str, str]) -> list[InboundEvent]:
    """One push notification (docs/providers.md, Google Calendar): the body is empty, the
    headers are the event."""
    channel = headers.get("x-goog-channel-id", "").strip()
    number = headers.get("x-goog-message-number", "").strip()
    if not channel or not number:
        raise Malformed("X-Goog-Channel-ID and X-Goog-Message-Number are required")
    facts = {
        "channel_id": channel,
        "message_number": number,
        "resource_state": headers.get("x-goog-resource-state", ""),
        "resource_id": headers.get("x-goog-resource-id", ""),
    }
    return [InboundEvent(_bounded(f"{channel}:{number}"), channel, facts)]


BodyExtractor = Callable[[Any, bytes], list[InboundEvent]]
