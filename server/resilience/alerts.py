"""Alerts: the public surface of the alert store (alert_store.py), the connection lifecycle
(connection_health.py) and breaker persistence (breaker_state.py)."""

from __future__ import annotations

from server.resilience.alert_store import (
    AUDIENCES,
    DETAIL_KEYS,
    MAILED_KINDS,
    SEVERITIES,
    alert_retry_backlogs,
    note_repeat,
    open_alert,
    open_alert_count,
    raise_alert,
    resolve_alerts,
    visible_to,
)
from server.resilience.breaker_state import BreakerAlerts
from server.resilience.connection_health import connection_broken, connection_recovered

__all__ = [
    "AUDIENCES",
    "DETAIL_KEYS",
    "MAILED_KINDS",
    "SEVERITIES",
    "BreakerAlerts",
    "alert_retry_backlogs",
    "connection_broken",
    "connection_recovered",
    "note_repeat",
    "open_alert",
    "open_alert_count",
    "raise_alert",
    "resolve_alerts",
    "visible_to",
]
