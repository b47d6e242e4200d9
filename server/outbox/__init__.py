"""The change feed: what this service created or changed, recorded for the CRM core in the
transaction of the change, numbered per tenant, replayable until retention removes it."""

from server.outbox.feed import (
    SequenceExpired,
    check_resumable,
    read_after,
    read_one,
    replay_page,
)
from server.outbox.record import FEED_KINDS, RecordedChange, record_change
from server.outbox.retention import install_outbox_retention, purge_outbox

__all__ = [
    "FEED_KINDS",
    "RecordedChange",
    "SequenceExpired",
    "check_resumable",
    "install_outbox_retention",
    "purge_outbox",
    "read_after",
    "read_one",
    "record_change",
    "replay_page",
]
