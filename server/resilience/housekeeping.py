"""The queue's own periodic tasks, registered on the scheduler by the composition root."""

from __future__ import annotations

import logging

from sqlalchemy import text

from db.uow import Database
from server.resilience.alerts import alert_retry_backlogs
from server.resilience.queue import purge_expired
from server.resilience.scheduler import Scheduler

_log = logging.getLogger(__name__)

BACKLOG_CHECK_SECONDS = 60.0
PURGE_SECONDS = 3600.0
# The per-minute counts of refused webhooks (server/ingress/rejections.py) are kept a week.
_PURGE_REJECTIONS = text("DELETE FROM webhook_rejeicoes WHERE minuto < now() - interval '7 days'")


def install_housekeeping(scheduler: Scheduler, db: Database) -> None:
    """Retry-backlog alerts every minute; purge of expired request ids, OAuth states,
    long-finished jobs and week-old refused-webhook counts every hour."""

    async def backlog() -> None:
        alerted = await alert_retry_backlogs(db)
        if alerted:
            _log.info("retry backlog alert raised for %d tenant(s)", len(alerted))

    async def purge() -> None:
        async with db.system() as session:
            counts = await purge_expired(session)
            deleted = await session.execute(_PURGE_REJECTIONS)
            counts["webhook_rejeicoes"] = int(getattr(deleted, "rowcount", 0) or 0)
        if any(counts.values()):
            _log.info("purged %s", counts)

    scheduler.every("queue.retry_backlog_alerts", BACKLOG_CHECK_SECONDS, backlog)
    scheduler.every("queue.purge_expired", PURGE_SECONDS, purge)
