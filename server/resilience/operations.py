"""Every kind of queued job, declared once: its name, its retry policy and its breaker.

An `Operation` is the one place that says how a job type is retried and which provider's
circuit breaker guards it. Enqueue reads its attempt budget from it, the worker its timeout,
backoff and breaker, the ingress routes the operation their webhooks feed, and a room
registers its handler against it (`deps.jobs.register(OPERATION, handler)`). There is no
lookup by name and no default: a job type that is not declared here cannot be enqueued.

A provider call made by a job's handler is guarded by the job's breaker in the worker, once:
inside a handler, `BreakerRegistry.guard` for that same provider is a no-op (see
server/resilience/breaker.py), so a client shared with RPC paths needs no job-specific variant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from server.resilience.policies import POLICIES, RetryPolicy, policy_for


@dataclass(frozen=True)
class Operation:
    """Attributes:
    name: `eventos_pendentes.operacao`; the handler registered for it consumes the job.
    policy: the spec's retry row it follows (attempts, backoff, timeout).
    breaker: the provider breaker (a key of BREAKER_CONFIGS) the worker asks before each
        attempt, or None when the handler calls no provider.
    repeatable: an attempt may run again after the database failed under it (a restart, a
        failover): the handler's provider calls are reads, or the provider deduplicates
        them (CAPI's event_id, an audience's member set, the Calendar event's own id, a
        WhatsApp message's pre-generated id). False for sends that a provider cannot
        deduplicate (Instagram, SMTP): one of those may have left before the write failed,
        so it dead-letters for a person.
    """

    name: str
    policy: RetryPolicy
    breaker: str | None = None
    repeatable: bool = False

    @property
    def max_attempts(self) -> int:
        return self.policy.max_attempts

    def policy_for(self, tenant_retry_config: Mapping[str, object] | None) -> RetryPolicy:
        """The policy with the tenant's overrides (policies.policy_for) applied."""
        return policy_for(self.policy.operation, tenant_retry_config)


def _op(
    name: str, policy: str, breaker: str | None = None, *, repeatable: bool = False
) -> Operation:
    return Operation(name, POLICIES[policy], breaker, repeatable)


# WhatsApp (server/whatsapp/)
WAHA_EVENT = _op("waha_event", "inbound_event", repeatable=True)
# Every attempt sends the message under the same WhatsApp id (server/whatsapp/message_ids.py).
WHATSAPP_SEND = _op("whatsapp_send", "whatsapp_send", "waha", repeatable=True)
# Logout/delete in WAHA after a disconnect WAHA could not take at the time: a WAHA call that
# must happen, retried like a send.
WAHA_CLEANUP = _op("waha_cleanup", "whatsapp_send", "waha", repeatable=True)
# A session WAHA reports FAILED: restart, then logout and start (server/whatsapp/recovery.py).
WAHA_RECOVER = _op("waha_recover", "whatsapp_send", "waha", repeatable=True)
# Meta Lead Ads (server/meta_leads/): webhook deliveries, backfilled and parked leads alike.
META_LEADGEN = _op("meta_leadgen", "lead_processing", "meta_graph", repeatable=True)
# Disconnecting Meta revokes the app's permissions at Meta (best effort, retried like a
# token call).
META_REVOKE = _op("meta_revoke", "oauth_refresh", "meta_graph", repeatable=True)
# Conversions API (server/conversions/): a CRM or Lead Ads event sent to the pixel.
CAPI_EVENT = _op("capi_event", "capi_event", "meta_capi", repeatable=True)
# Custom Audiences (server/audiences/), all on the spec's audience row: members added to an
# audience (events, sync now), an audience deleted at Meta, a contact's hashes removed from an
# audience (deleted in the directory, consent withdrawn).
AUDIENCE_SYNC = _op("audience_sync", "audience_sync", "meta_audiences", repeatable=True)
AUDIENCE_DELETE = _op("audience_delete", "audience_sync", "meta_audiences", repeatable=True)
AUDIENCE_REMOVE = _op("audience_remove", "audience_sync", "meta_audiences", repeatable=True)
# Instagram Direct (server/instagram/): webhook deliveries and sends.
INSTAGRAM_EVENT = _op("instagram_event", "inbound_event", repeatable=True)
INSTAGRAM_SEND = _op("instagram_send", "instagram_send", "instagram")
# Google Calendar (server/google_calendar/): push notifications (an incremental sync, which
# calls Google) and the events of meetings the CRM schedules.
GOOGLE_CALENDAR_NOTIFICATION = _op(
    "google_calendar_notification", "inbound_event", "google_calendar", repeatable=True
)
GOOGLE_CALENDAR_CREATE = _op(
    "google_calendar_create", "calendar_create", "google_calendar", repeatable=True
)
# E-mail (server/email/): one message through SMTP or Gmail (the handler picks the breaker by
# transport).
EMAIL_SEND = _op("email_send", "email_send")
# Signed outbound webhooks to a tenant's endpoint (no provider breaker: one URL per tenant).
OUTBOUND_WEBHOOK = _op("outbound_webhook", "outbound_webhook", repeatable=True)

OPERATIONS: Mapping[str, Operation] = MappingProxyType(
    {
        op.name: op
        for op in (
            WAHA_EVENT,
            WHATSAPP_SEND,
            WAHA_CLEANUP,
            WAHA_RECOVER,
            META_LEADGEN,
            META_REVOKE,
            CAPI_EVENT,
            AUDIENCE_SYNC,
            AUDIENCE_DELETE,
            AUDIENCE_REMOVE,
            INSTAGRAM_EVENT,
            INSTAGRAM_SEND,
            GOOGLE_CALENDAR_NOTIFICATION,
            GOOGLE_CALENDAR_CREATE,
            EMAIL_SEND,
            OUTBOUND_WEBHOOK,
        )
    }
)
