"""Jobs on the durable queue (eventos_pendentes): what a handler sees and how work is enqueued.

Enqueue happens inside the caller's own unit of work, so the job exists exactly when the change
that caused it commits. The idempotency key is unique per tenant: enqueueing the same key twice
is a no-op, which is what makes webhook redelivery and RPC retries safe. A trigger (migration
0002) NOTIFYs `conexoes_jobs` at commit, so an idle worker starts on it at once.

Handler contract (rooms register handlers with `deps.jobs.register(OPERATION, handler)` from
their `register_jobs(deps)`, OPERATION declared in server/resilience/operations.py; see
server/services.py):

- **At least once, idempotent by key.** A job may run more than once: its worker can die or
  lose its lease after the provider call succeeded but before the job was marked completed,
  and then another worker runs it again. A handler must make a repeat harmless, keyed on
  `job.idempotency_key` (send it as the provider's dedup id, e.g. CAPI `event_id`; or check
  what it already wrote under that key before writing again).
- **Fail by raising.** A `ProviderError` (or any `DomainError`) says whether it is retryable
  (`retryable`, `retry_after`); any other exception is a bug and dead-letters the job at once.
  Raising `CircuitOpen` postpones the job without spending an attempt.
- **Own transactions.** The handler opens its own units of work (as the job's tenant); the
  worker records the outcome in a separate statement afterwards. A handler whose last step
  is a write (nothing reaches a provider after it) may instead complete the job in that
  write's transaction, `await job.complete_within(conn)` on its `plain_unit_of_work`
  connection: the job is completed exactly when its result commits, and the worker skips its
  own completion. That transaction's errors must propagate out of the handler.
- **Bounded time.** Each attempt is cut at its policy's `timeout_s`.
- **Told when given up.** `register(..., on_dead_letter=...)` runs in the transaction that
  dead-letters the job, however it ended (final error, last attempt timed out, worker lost),
  so a row the job was to settle never stays pending.
- **Guarded once.** The worker asks the operation's breaker before each attempt and reports
  the outcome; the handler's own `deps.breakers.guard(<that provider>)` is then a no-op.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy import ColumnElement, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import PendingEvent
from server.interceptors.outages import as_unavailable
from server.observability.jobs import enqueue_context
from server.resilience import queue
from server.resilience.operations import Operation


@dataclass
class Completion:
    """A running attempt's completion, for a handler to write with its own last write."""

    job_id: uuid.UUID
    worker: str
    attempt: int
    max_attempts: int
    # None: not written by the handler; True: completed with its write; False: the lease
    # had gone to another worker (the handler's write still stands, as when it ran alone).
    written: bool | None = None

    async def within(self, conn: asyncpg.Connection) -> None:
        self.written = await queue.complete(
            conn, self.job_id, self.worker, attempt=self.attempt, max_attempts=self.max_attempts
        )


@dataclass(frozen=True)
class Job:
    id: uuid.UUID
    tenant_id: uuid.UUID
    operation: str
    tipo: str
    destino: str
    payload: Mapping[str, Any]
    idempotency_key: str
    attempt: int  # 1-based number of the attempt now running
    max_attempts: int
    completion: Completion | None = field(default=None, compare=False, repr=False)

    async def complete_within(self, conn: asyncpg.Connection) -> None:
        """Completes this job in `conn`'s open transaction (the handler's last write): the
        completion commits or rolls back with it. Call it as the transaction's last step."""
        if self.completion is None:
            raise RuntimeError("this job was not handed out by a worker")
        await self.completion.within(conn)


# A handler does the job's work. It raises a ProviderError (retryable or final) or any
# DomainError to fail; returning normally completes the job.
JobHandler = Callable[[Job], Awaitable[None]]

# What the job's own records say once the worker gives up on it (the dead-lettering
# transaction, the job, the last error). The handler cannot do it itself when its last attempt
# timed out or its worker died, so a room whose rows wait on the job registers this too.
DeadLetterHandler = Callable[[AsyncSession, Job, str], Awaitable[None]]


@dataclass(frozen=True)
class HandlerSpec:
    operation: Operation
    handler: JobHandler
    on_dead_letter: DeadLetterHandler | None = None

    @property
    def breaker(self) -> str | None:
        return self.operation.breaker


@dataclass
class JobRegistry:
    """Operation name -> handler. Rooms register their handlers at start-up."""

    _specs: dict[str, HandlerSpec] = field(default_factory=dict)
    _names: list[str] = field(default_factory=list)  # sorted, read by every claim

    def register(
        self,
        operation: Operation,
        handler: JobHandler,
        *,
        on_dead_letter: DeadLetterHandler | None = None,
    ) -> None:
        if operation.name in self._specs:
            raise ValueError(f"operation {operation.name!r} already has a handler")
        self._specs[operation.name] = HandlerSpec(operation, handler, on_dead_letter)
        self._names = sorted(self._specs)

    def get(self, operation: str) -> HandlerSpec | None:
        return self._specs.get(operation)

    @property
    def operations(self) -> list[str]:
        return list(self._names)


async def enqueue(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    operation: Operation,
    payload: Mapping[str, Any],
    idempotency_key: str,
    tipo: str | None = None,
    destino: str = "",
    max_attempts: int | None = None,
    run_at: dt.datetime | None = None,
) -> uuid.UUID | None:
    """Adds a job in the session's transaction. Returns its id, or None if the key exists.

    The attempt budget is the operation's policy (`max_attempts` overrides it for tests and
    tools; rooms leave it unset).
    """
    values = job_values(
        tenant_id=tenant_id,
        operation=operation,
        payload=payload,
        idempotency_key=idempotency_key,
        tipo=tipo,
        destino=destino,
        max_attempts=max_attempts,
        run_at=run_at,
    )
    return await session.scalar(
        insert(PendingEvent)
        .values(**values)
        .on_conflict_do_nothing(index_elements=JOB_KEY)
        .returning(PendingEvent.id)
    )


# A job's idempotency key is unique per tenant: the conflict target of every enqueue.
JOB_KEY = ["organizacao_id", "idempotency_key"]


def job_values(
    *,
    tenant_id: uuid.UUID,
    operation: Operation,
    payload: Mapping[str, Any] | ColumnElement[Any],
    idempotency_key: str,
    tipo: str | None = None,
    destino: str = "",
    max_attempts: int | None = None,
    run_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """The eventos_pendentes row `enqueue` inserts (for statements that enqueue as part of a
    larger one; `payload` may then be an SQL expression)."""
    return {
        "organizacao_id": tenant_id,
        "tipo": tipo or operation.name,
        "operacao": operation.name,
        "destino": destino,
        "payload": payload if isinstance(payload, ColumnElement) else dict(payload),
        "idempotency_key": idempotency_key,
        "max_tentativas": max_attempts or operation.max_attempts,
        "proxima_tentativa": run_at if run_at is not None else func.now(),
        **enqueue_context(),
    }


@contextmanager
def before_the_provider() -> Iterator[None]:
    """Wraps the reads a send's handler makes before it calls its provider: the database
    lost there (a restart, a failover) is a retryable failure (DATABASE_UNAVAILABLE), since
    nothing has left yet. A send's operation is not `repeatable` as a whole, because the
    same loss after the provider's answer may hide a message that already left."""
    try:
        yield
    except Exception as exc:
        unavailable = as_unavailable(exc)
        if unavailable is None:
            raise
        raise unavailable from exc
