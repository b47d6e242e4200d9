"""Periodic work, one replica at a time (DESIGN "Nothing lost": token refresh, WAHA health
checks, calendar channel renewal, lead backfill, and the queue's own housekeeping).

Rooms register tasks at start-up:

    deps.scheduler.every("whatsapp.health_check", 300, check_sessions)

Each run takes a session-level PostgreSQL advisory lock named after the task on the
scheduler's own connection (`pg_try_advisory_lock`); a replica that cannot take it skips
that run, so a task never runs on two replicas at once. If the connection drops, PostgreSQL
releases the locks with it, so a dead replica never holds a task hostage. The lock does not
space runs across replicas: N replicas may each run a task once per interval, one after the
other, so tasks must be safe to run again (they read state, they do not count ticks).

A task's first run is one interval after start (a restart loop must not hammer providers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from db.uow import Database
from server.resilience.clock import Clock

_log = logging.getLogger(__name__)

TaskFn = Callable[[], Awaitable[None]]
LOCK_NAMESPACE = "conexoes.scheduler"


@dataclass
class _Task:
    name: str
    interval: float
    fn: TaskFn
    next_due: float  # clock.monotonic() of the next run
    running: bool = False


class Scheduler:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        tick: float = 1.0,
        lock_namespace: str = LOCK_NAMESPACE,
    ) -> None:
        """Args:
        tick: how often (clock seconds) the loop looks for due tasks.
        lock_namespace: prefix of the advisory lock names (tests isolate themselves with it).
        """
        self._db = db
        self._clock = clock
        self._tick = tick
        self._namespace = lock_namespace
        self._tasks: dict[str, _Task] = {}
        self._conn: asyncpg.Connection | None = None
        self._conn_lock = asyncio.Lock()  # one query at a time on the lock connection
        self._loop_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[bool]] = set()

    def every(self, name: str, interval: float, fn: TaskFn) -> None:
        """Runs `fn` every `interval` seconds on one replica at a time."""
        if interval <= 0:
            raise ValueError("interval must be positive")
        if name in self._tasks:
            raise ValueError(f"task {name!r} already scheduled")
        self._tasks[name] = _Task(name, interval, fn, self._clock.monotonic() + interval)

    @property
    def names(self) -> list[str]:
        return sorted(self._tasks)

    async def run_due(self) -> list[str]:
        """Runs every task due now (concurrently) and returns the names of those that ran."""
        now = self._clock.monotonic()
        due = [t for t in self._tasks.values() if t.next_due <= now and not t.running]
        for task in due:
            task.next_due = now + task.interval
        results = await asyncio.gather(*(self._run(t) for t in due))
        return [t.name for t, ran in zip(due, results, strict=True) if ran]

    async def run_now(self, name: str) -> bool:
        """Runs one task at once (under its lock). False if another replica holds it."""
        return await self._run(self._tasks[name])

    async def start(self) -> None:
        if self._loop_task is None and self._tasks:
            self._loop_task = asyncio.create_task(self._loop(), name="scheduler")

    async def stop(self, grace: float = 10.0) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        if self._running:
            _, late = await asyncio.wait(set(self._running), timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._conn is not None and not self._conn.is_closed():
            with contextlib.suppress(Exception):
                await self._conn.close()
        self._conn = None

    async def _loop(self) -> None:
        while True:
            now = self._clock.monotonic()
            for task in self._tasks.values():
                if task.next_due <= now and not task.running:
                    task.next_due = now + task.interval
                    # Tasks run beside the loop: a slow one must not delay the others.
                    bg = asyncio.create_task(self._run(task), name=f"scheduled-{task.name}")
                    self._running.add(bg)
                    bg.add_done_callback(self._running.discard)
            await self._clock.sleep(self._tick)

    async def _run(self, task: _Task) -> bool:
        lock_name = f"{self._namespace}:{task.name}"
        try:
            if not await self._lock("pg_try_advisory_lock", lock_name):
                return False
        except Exception as exc:
            _log.warning("scheduler cannot take the lock for %s: %s", task.name, exc)
            return False
        task.running = True
        try:
            await task.fn()
        except Exception:
            _log.exception("scheduled task %s failed", task.name)
        finally:
            task.running = False
            with contextlib.suppress(Exception):
                await self._lock("pg_advisory_unlock", lock_name)
        return True

    async def _lock(self, function: str, name: str) -> bool:
        async with self._conn_lock:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._db.raw_connection()
            return bool(
                await self._conn.fetchval(f"SELECT {function}(hashtextextended($1, 0))", name)
            )
