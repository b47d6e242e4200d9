"""Queue workers: claim due jobs and run them, up to `concurrency` at a time.

One `Worker` per process. It wakes on the `conexoes_jobs` NOTIFY (a job became due) and polls
every `poll_interval` seconds for retries coming due. One attempt of one job is attempt.py's
business (its outcome table is there), its budget budget.py's, and what a dead letter tells
people dead_letters.py's (a hook). A worker that dies loses its leases and the jobs are
claimed again, the lost run counting as an attempt (migration 0002).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import random
import socket
import uuid

import asyncpg

from db.uow import Database
from server.resilience import queue
from server.resilience.attempt import AttemptRunner
from server.resilience.backoff import RandomSource
from server.resilience.breaker import BreakerRegistry
from server.resilience.budget import AttemptBudget, PolicyLookup, tenant_service
from server.resilience.clock import Clock
from server.resilience.dead_letters import DeadLetterHook, announce_dead_letter
from server.resilience.jobs import JobRegistry
from server.resilience.policies import policy_for
from server.resilience.queue import ClaimedJob

__all__ = ["Worker", "tenant_service"]

_log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        db: Database,
        registry: JobRegistry,
        breakers: BreakerRegistry,
        clock: Clock,
        *,
        concurrency: int = 4,
        lease_seconds: int = 60,
        poll_interval: float = 1.0,
        worker_id: str | None = None,
        rng: RandomSource | None = None,
        policy_lookup: PolicyLookup = policy_for,
        on_dead_letter: DeadLetterHook = announce_dead_letter,
    ) -> None:
        """Args:
        lease_seconds: how long a claim holds without a heartbeat (renewed every third).
        poll_interval: real seconds between claims when no NOTIFY arrives.
        policy_lookup: (policy row, tenant retry_config) -> policy; tests shorten timeouts.
        on_dead_letter: what a dead letter does beyond its row (audit, alert, event).
        """
        if concurrency < 1 or lease_seconds < 1:
            raise ValueError("concurrency and lease_seconds must be at least 1")
        self._db = db
        self._registry = registry
        self._clock = clock
        self._concurrency = concurrency
        self._lease = lease_seconds
        self._poll = poll_interval
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._runner = AttemptRunner(
            db,
            registry,
            breakers,
            clock,
            AttemptBudget(db, policy_lookup),
            rng or random.Random(),
            on_dead_letter,
            worker_id=self.id,
            lease_seconds=lease_seconds,
            poll_interval=poll_interval,
        )
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._listener: asyncpg.Connection | None = None

    @property
    def running(self) -> int:
        return len(self._inflight)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._loop_task is None:
            self._stopping = False
            self._loop_task = asyncio.create_task(self._run_loop(), name=f"worker-{self.id}")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, give running jobs `grace` seconds, then cancel them (their leases
        are released, no attempt spent) and close the LISTEN connection."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        if self._inflight:
            _, late = await asyncio.wait(set(self._inflight), timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._close_listener()

    async def run_once(self) -> int:
        """Claims what is due now (up to `concurrency`) and runs it to the end. For tests and
        one-shot use; returns how many jobs ran."""
        jobs = await self._claim(self._concurrency)
        await asyncio.gather(*(self._process(job) for job in jobs))
        return len(jobs)

    # -- the loop --------------------------------------------------------------------------

    async def _run_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before claiming: a NOTIFY during the claim is not lost
            await self._ensure_listener()
            free = self._concurrency - len(self._inflight)
            if free > 0:
                try:
                    jobs = await self._claim(free)
                except Exception:
                    _log.exception("claiming jobs failed; retrying after the poll interval")
                    jobs = []
                for job in jobs:
                    self._spawn(job)
                if jobs and len(jobs) == free and not self._stopping:
                    continue  # there may be more due: claim again as soon as a slot frees
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)

    def _spawn(self, job: ClaimedJob) -> None:
        task = asyncio.create_task(self._process(job), name=f"job-{job.id}")
        self._inflight.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._inflight.discard(t)
            self._wake.set()  # a slot is free

        task.add_done_callback(done)

    async def _ensure_listener(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        try:
            conn = await self._db.raw_connection()
            await conn.add_listener(queue.JOBS_CHANNEL, lambda *_: self._wake.set())
            self._listener = conn
        except Exception as exc:  # polling still works; try again next round
            _log.warning("cannot LISTEN on %s (%s); polling only", queue.JOBS_CHANNEL, exc)

    async def _close_listener(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            with contextlib.suppress(Exception):
                await self._listener.close()
        self._listener = None

    def _now(self) -> dt.datetime | None:
        return queue.db_time(self._clock)

    async def _claim(self, limit: int) -> list[ClaimedJob]:
        operations = self._registry.operations
        if not operations:
            return []
        async with self._db.system() as session:
            return await queue.claim(
                session,
                worker=self.id,
                limit=limit,
                lease_seconds=self._lease,
                operations=operations,
                now=self._now(),
            )

    # -- one job ---------------------------------------------------------------------------

    async def _process(self, job: ClaimedJob) -> None:
        try:
            await self._runner.run(job)
        except asyncio.CancelledError:
            # Shutdown past the grace period: hand the job back without spending an attempt.
            await asyncio.shield(self._runner.release(job, "worker stopped during attempt"))
            raise
        except Exception:
            # Our own bookkeeping failed (database down). The lease will expire and the job
            # will be claimed again; nothing is lost.
            _log.exception("recording the outcome of job %s failed", job.id)
