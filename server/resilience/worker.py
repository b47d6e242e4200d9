"""Queue workers: claim due jobs and run them, up to `concurrency` at a time.

One `Worker` per process. It wakes on the `conexoes_jobs` NOTIFY (a job became due) and polls
every `poll_interval` seconds for retries coming due. One attempt of one job is attempt.py's
business (its outcome table is there), its budget budget.py's, the leases of long jobs
leases.py's, and what a dead letter tells people dead_letters.py's (a hook). A worker that
dies loses its leases and the jobs are claimed again, the lost run counting as an attempt
(migration 0002).

Slots: at most `concurrency` jobs run at once. A claim first reserves the free slots it asks
for and gives back what it did not fill. Under a backlog a job that completes claims the next
ones in its completion's round trip (its own slot and any other free one) and its task goes
on with the first of them, so a busy worker pays one statement per job instead of a claim
and a completion each.
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
from server.resilience.leases import LeaseKeeper
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
        self._leases = LeaseKeeper(
            db, clock, worker_id=self.id, lease_seconds=lease_seconds, now=self._now
        )
        self._runner = AttemptRunner(
            db,
            registry,
            breakers,
            clock,
            AttemptBudget(db, policy_lookup),
            rng or random.Random(),
            on_dead_letter,
            self._leases,
            worker_id=self.id,
            lease_seconds=lease_seconds,
            poll_interval=poll_interval,
        )
        self._inflight: set[asyncio.Task[bool]] = set()
        self._taken = 0  # slots running a job or reserved by a claim in flight
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._keeper_task: asyncio.Task[None] | None = None
        self._listener: asyncpg.Connection | None = None

    @property
    def running(self) -> int:
        return len(self._inflight)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._loop_task is None:
            self._stopping = False
            self._start_keeper()
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
        await self._stop_keeper()
        await self._close_listener()

    async def run_once(self) -> int:
        """Claims what is due now (up to `concurrency`) and runs it to the end. For tests and
        one-shot use; returns how many jobs ran."""
        jobs = await self._claim(self._concurrency)
        keeper = self._start_keeper()
        try:
            await asyncio.gather(*(self._process(job, chain=False) for job in jobs))
        finally:
            if keeper:
                await self._stop_keeper()
        return len(jobs)

    def _start_keeper(self) -> bool:
        if self._keeper_task is not None:
            return False
        self._keeper_task = asyncio.create_task(self._leases.run(), name=f"leases-{self.id}")
        return True

    async def _stop_keeper(self) -> None:
        if self._keeper_task is not None:
            self._keeper_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper_task
            self._keeper_task = None

    # -- slots -----------------------------------------------------------------------------

    def _reserve(self, wanted: int) -> int:
        granted = max(0, min(wanted, self._concurrency - self._taken))
        self._taken += granted
        return granted

    def _give_back(self, slots: int) -> None:
        if slots > 0:
            self._taken -= slots
            self._wake.set()

    # -- the loop --------------------------------------------------------------------------

    async def _run_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before claiming: a NOTIFY during the claim is not lost
            await self._ensure_listener()
            reserved = self._reserve(self._concurrency)
            if reserved > 0:
                try:
                    jobs = await self._claim(reserved)
                except Exception:
                    _log.exception("claiming jobs failed; retrying after the poll interval")
                    jobs = []
                self._taken -= reserved - len(jobs)  # no wake-up: this loop is awake
                for job in jobs:
                    self._spawn(job)
                if jobs and len(jobs) == reserved and not self._stopping:
                    continue  # there may be more due: claim again as soon as a slot frees
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)

    def _spawn(self, job: ClaimedJob) -> None:
        """Runs `job` in a task holding one slot (already counted in `_taken`)."""
        task = asyncio.create_task(self._process(job), name=f"job-{job.id}")
        self._inflight.add(task)

        def done(t: asyncio.Task[bool]) -> None:
            self._inflight.discard(t)
            self._taken -= 1
            # A task that found the queue empty leaves the loop asleep: a new job NOTIFYs.
            if t.cancelled() or t.exception() is not None or not t.result():
                self._wake.set()

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
        return await self._runner.claim(limit)

    # -- one job, and those its completions claim ------------------------------------------

    async def _process(self, job: ClaimedJob, *, chain: bool = True) -> bool:
        """Runs `job`, then (with `chain`) each next job its completion claimed, in this
        task's slot. True when the last completion's claim found nothing due."""
        current: ClaimedJob | None = job
        drained = False
        while current is not None:
            extra = 0
            asked = False

            def reserve() -> int:
                nonlocal extra, asked
                if self._stopping:
                    return 0
                asked = True
                extra = self._reserve(self._concurrency)
                return 1 + extra  # this task's own slot, and the other free ones

            try:
                following = await self._runner.run(current, reserve if chain else None)
            except asyncio.CancelledError:
                # Shutdown past the grace period: hand the job back without spending an
                # attempt.
                await asyncio.shield(self._runner.release(current, "worker stopped during attempt"))
                self._give_back(extra)
                raise
            except Exception:
                # Our own bookkeeping failed (database down). The lease will expire and the
                # job will be claimed again; nothing is lost.
                _log.exception("recording the outcome of job %s failed", current.id)
                self._give_back(extra)
                return False
            drained = asked and not following
            current, rest = (following[0], following[1:]) if following else (None, [])
            for job_ in rest:
                self._spawn(job_)  # each takes one of the reserved extra slots
            self._give_back(extra - len(rest))
        return drained
