"""CRM pipeline events as Meta Conversion Leads events (pure functions, no I/O).

https://developers.facebook.com/docs/marketing-api/conversions-api/conversion-leads-integration
Every event is `action_source=system_generated` with `custom_data.event_source=crm` and
`lead_event_source` (our CRM's name); `lead_id` travels unhashed when the contact came from
Lead Ads; `event_id` is the producer's request id (Meta deduplicates on it); `event_time` is
Unix seconds, and an event older than 7 days would make Meta reject the whole batch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

ACTION_SOURCE = "system_generated"
EVENT_SOURCE = "crm"
LEAD_EVENT_SOURCE = "Renove CRM"
MAX_AGE = dt.timedelta(days=7)

# CRM event (config and audience key) -> Meta event name. "lost" is the custom `lead_lost`.
EVENT_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "lead": "Lead",
        "schedule": "Schedule",
        "mql": "CompleteRegistration",
        "won": "Purchase",
        "lost": "lead_lost",
    }
)
DEFAULT_ENABLED: Mapping[str, bool] = MappingProxyType(dict.fromkeys(EVENT_NAMES, True))


@dataclass(frozen=True)
class Money:
    value: float
    currency: str


def is_stale(event_time: dt.datetime, now: dt.datetime) -> bool:
    return event_time < now - MAX_AGE


STALE_REASON = (
    "event_time mais antigo que 7 dias: a Meta rejeitaria o lote inteiro; evento nao enviado"
)


def meta_event(
    *,
    crm_event: str,
    event_id: str,
    event_time: dt.datetime,
    user_data: Mapping[str, str],
    money: Money | None = None,
    content_name: str = "",
) -> dict[str, Any]:
    """The server event Meta receives. `user_data` is already normalised and hashed."""
    custom: dict[str, Any] = {"event_source": EVENT_SOURCE, "lead_event_source": LEAD_EVENT_SOURCE}
    if money is not None:
        custom["value"] = money.value
        custom["currency"] = money.currency
    if content_name:
        custom["content_name"] = content_name
    return {
        "event_name": EVENT_NAMES[crm_event],
        "event_time": int(event_time.timestamp()),
        "event_id": event_id,
        "action_source": ACTION_SOURCE,
        "user_data": dict(user_data),
        "custom_data": custom,
    }


def summary(event: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the log shows of an event: names of the keys sent, never their values or hashes."""
    custom = event.get("custom_data") or {}
    out: dict[str, Any] = {
        "event_name": event.get("event_name"),
        "action_source": event.get("action_source"),
        "user_data_keys": sorted((event.get("user_data") or {}).keys()),
        "lead_event_source": custom.get("lead_event_source"),
    }
    if "value" in custom:
        out["value"] = custom["value"]
        out["currency"] = custom.get("currency")
    if custom.get("content_name"):
        out["content_name"] = custom["content_name"]
    if extra:
        out.update({k: v for k, v in extra.items() if v not in (None, "")})
    return out
