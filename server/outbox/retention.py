"""Retention of the change feed: recorded changes older than the configured days are removed
hourly (one replica at a time, under the scheduler's lock), and each tenant remembers the
highest sequence removed so a late consumer is told to resynchronise instead of silently
missing changes."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import text

from db.uow import Database
from server.resilience.scheduler import Scheduler

_log = logging.getLogger(__name__)
PURGE_SECONDS = 3600.0


async def purge_outbox(db: Database, older_than: dt.timedelta) -> int:
    """Removes recorded changes older than `older_than`, every tenant; returns how many."""
    async with db.system() as session:
        removed = await session.scalar(text("SELECT app_purge_outbox(:age)"), {"age": older_than})
    return int(removed or 0)


def install_outbox_retention(scheduler: Scheduler, db: Database, days: float) -> None:
    age = dt.timedelta(days=days)

    async def purge() -> None:
        removed = await purge_outbox(db, age)
        if removed:
            _log.info("change feed retention removed %d recorded change(s)", removed)

    scheduler.every("outbox.retention", PURGE_SECONDS, purge)
