"""The queue's own periodic tasks, registered on the scheduler by the composition root."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Retention:
    """How long finished jobs (completed or discarded; dead letters stay until handled) and
    handled webhook deliveries are kept (CONEXOES_JOB_RETENTION_DAYS,
    CONEXOES_WEBHOOK_INBOX_RETENTION_DAYS)."""

    finished_jobs: dt.timedelta = dt.timedelta(days=30)
    webhook_inbox: dt.timedelta = dt.timedelta(days=30)


async def purge_old_rows(db: Database, retention: Retention) -> dict[str, int]:
    """One retention pass across tenants (through the definer functions). Returns the counts."""
    async with db.system() as session:
        counts = await purge_expired(session, finished_jobs_older_than=retention.finished_jobs)
        inbox = await session.scalar(
            text("SELECT app_purge_webhook_inbox(:older)"), {"older": retention.webhook_inbox}
        )
        rejections = await session.execute(_PURGE_REJECTIONS)
    return {
        **counts,
        "webhook_inbox": int(inbox or 0),
        "webhook_rejeicoes": int(getattr(rejections, "rowcount", 0) or 0),
    }


def install_housekeeping(
    scheduler: Scheduler, db: Database, retention: Retention | None = None
) -> None:
    """Retry-backlog alerts every minute; every hour, the purge of expired request ids, OAuth
    states and week-old refused-webhook counts, and the retention of finished jobs and handled
    webhook deliveries."""
    kept = retention or Retention()

    async def backlog() -> None:
        alerted = await alert_retry_backlogs(db)
        if alerted:
            _log.info("retry backlog alert raised for %d tenant(s)", len(alerted))

    async def purge() -> None:
        counts = await purge_old_rows(db, kept)
        if any(counts.values()):
            _log.info("purged %s", counts)

    scheduler.every("queue.retry_backlog_alerts", BACKLOG_CHECK_SECONDS, backlog)
    scheduler.every("queue.purge_expired", PURGE_SECONDS, purge)
