"""The Conversions API room: the pixel's configuration, events built and hashed by Meta's rules,
their delivery in batches, logs and stats.

What another room may use (declared in pyproject.toml's import-linter contract): a pipeline
event (server/crm_events/publish.py) reads the configuration and its per-event toggles, builds
the Meta event and logs it pending before queueing its `capi_event` job.
"""

from server.conversions.config import enabled as event_enabled
from server.conversions.config import load as load_config
from server.conversions.config import send_value
from server.conversions.delivery import record_pending
from server.conversions.events import EVENT_NAMES, Money, meta_event
from server.conversions.identity import contact_info

__all__ = [
    "EVENT_NAMES",
    "Money",
    "contact_info",
    "event_enabled",
    "load_config",
    "meta_event",
    "record_pending",
    "send_value",
]
