"""Keeping the leases of a worker's long-running jobs alive.

A claim leases a job for `lease_seconds`. Most jobs end well within a third of it, so no job
gets a heartbeat of its own: one keeper per worker wakes every third of the lease and renews,
in one statement, the leases of the jobs it has held for at least that long. A job claimed just
after a round is renewed two rounds later at the latest, a third of the lease before it would
run out. A lease found taken by another worker is reported once; that job's result will be
ignored when it ends (every outcome is guarded by the lease).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable

from db.uow import Database
from server.resilience import queue
from server.resilience.clock import Clock

_log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        worker_id: str,
        lease_seconds: int,
        now: Callable[[], dt.datetime | None],
    ) -> None:
        self._db = db
        self._clock = clock
        self._worker = worker_id
        self._lease = lease_seconds
        self._now = now
        self.interval = lease_seconds / 3
        # job id -> when its lease was last taken or renewed (clock.monotonic())
        self._held: dict[uuid.UUID, float] = {}

    def hold(self, job_id: uuid.UUID) -> None:
        self._held[job_id] = self._clock.monotonic()

    def drop(self, job_id: uuid.UUID) -> None:
        self._held.pop(job_id, None)

    async def run(self) -> None:
        """Renews leases every third of the lease, until cancelled."""
        while True:
            await self._clock.sleep(self.interval)
            try:
                await self.renew_due()
            except Exception as exc:  # the next round tries again, within the lease
                _log.warning("renewing job leases failed: %s", exc)

    async def renew_due(self) -> None:
        started = self._clock.monotonic()
        due = [job for job, since in self._held.items() if started - since >= self.interval]
        if not due:
            return
        async with self._db.autocommit() as conn:
            kept = await queue.renew_leases(
                conn, due, self._worker, lease_seconds=self._lease, now=self._now()
            )
        for job_id in due:
            if job_id not in self._held:
                continue  # ended meanwhile
            if job_id in kept:
                self._held[job_id] = started
            else:
                _log.warning("job %s lost its lease; its result will be ignored", job_id)
                del self._held[job_id]
