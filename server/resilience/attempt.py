"""One attempt of one claimed job, start to finish:

    circuit open      -> back to pending at the breaker's next probe; no attempt spent
    success           -> completed
    retryable error   -> pending, proxima_tentativa = now + next_delay (Retry-After honoured)
    database lost under a repeatable operation (operations.py)
                      -> pending, as a retryable error
    final error / last attempt
                      -> failed (dead-lettered), with the dead-letter hook's consequences

A long attempt keeps its lease alive through the worker's lease keeper (leases.py); the
handler runs under its policy's timeout, holding its operation's breaker permit (budget.py
gives the policy and budget). The outcome is one statement on the bare connection
(queue.py); a completion may claim the worker's next jobs in the same round trip, and a
handler may complete its job with its own last write (jobs.py), which leaves nothing to write.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from db.uow import Database
from server.errors import CircuitOpen, DomainError
from server.interceptors.outages import is_database_outage
from server.observability.jobs import attempt_scope
from server.providers.errors import ProviderError, ProviderTimeout
from server.resilience import queue
from server.resilience.backoff import RandomSource, next_delay
from server.resilience.breaker import BreakerRegistry, CircuitBreaker, Permit
from server.resilience.budget import AttemptBudget, tenant_service
from server.resilience.classify import is_retryable, retry_after_of
from server.resilience.clock import Clock
from server.resilience.dead_letters import DeadLetterHook
from server.resilience.jobs import Completion, HandlerSpec, Job, JobRegistry
from server.resilience.leases import LeaseKeeper
from server.resilience.policies import RetryPolicy
from server.resilience.queue import ClaimedJob

_log = logging.getLogger(__name__)
OUTCOME_RETRY_FIRST_S = 0.2
OUTCOME_RETRY_MAX_S = 5.0

# How many more jobs the worker takes with a completion (slots it reserved), or None.
Reserve = Callable[[], int]


class AttemptRunner:
    def __init__(
        self,
        db: Database,
        registry: JobRegistry,
        breakers: BreakerRegistry,
        clock: Clock,
        budget: AttemptBudget,
        rng: RandomSource,
        on_dead_letter: DeadLetterHook,
        leases: LeaseKeeper,
        *,
        worker_id: str,
        lease_seconds: int,
        poll_interval: float,
    ) -> None:
        self._db = db
        self._registry = registry
        self._breakers = breakers
        self._clock = clock
        self._budget = budget
        self._rng = rng
        self._on_dead_letter = on_dead_letter
        self._leases = leases
        self.id = worker_id
        self._lease = lease_seconds
        self._poll = poll_interval

    def _now(self) -> dt.datetime | None:
        return queue.db_time(self._clock)

    async def run(self, job: ClaimedJob, reserve: Reserve | None = None) -> list[ClaimedJob]:
        """One attempt of `job`. With `reserve`, a completed job's round trip also claims as
        many next jobs as `reserve()` says (slots the worker set aside): they are returned,
        leased to this worker, for it to run."""
        following: list[ClaimedJob] = []
        with attempt_scope(
            operation=job.operation,
            tenant_id=job.tenant_id,
            request_id=job.request_id,
            traceparent=job.traceparent,
            created_at=job.created_at,
        ) as scope:
            outcome = await self._run(job, reserve, following)
            if outcome is not None:
                scope.record(outcome, attempt=job.tentativas + 1)
        return following

    async def _run(
        self, job: ClaimedJob, reserve: Reserve | None, following: list[ClaimedJob]
    ) -> str | None:
        """One attempt; returns how it ended (None: not ours to count)."""
        spec = self._registry.get(job.operation)
        if spec is None:  # unregistered after the claim: leave it for a worker that has it
            await self.release(job, None)
            return "released"
        policy, max_attempts = await self._budget.of(job, spec)
        attempt = job.tentativas + 1
        if attempt > max_attempts:
            # A worker died during the last attempt (the reclaim counted it): stop here.
            await self._dead_letter(job, spec, attempt - 1, max_attempts, job_error(job))
            return "dead_letter"
        breaker = self._breakers.get(spec.breaker) if spec.breaker else None
        permit: Permit | None = None
        if breaker is not None:
            try:
                permit = breaker.allow()
            except CircuitOpen as exc:
                await self._postpone(job, exc, breaker)
                return "postponed"
        completion = Completion(job.id, self.id, attempt, max_attempts)
        handed = _as_job(job, attempt, max_attempts, completion)
        error = await self._run_handler(handed, spec, policy, breaker, permit)
        if error is None and completion.written is not None:
            # Completed with the handler's own last write: nothing left to record.
            if reserve is not None:
                try:
                    following[:] = await self.claim(reserve())
                except Exception as exc:  # the worker's loop claims them instead
                    _log.warning("claiming after job %s failed: %s", job.id, exc)
            if not completion.written:
                _log.warning("job %s finished after its lease was lost", job.id)
                return None
            return "completed"
        more = reserve() if reserve is not None and error is None else 0
        return await self._persist(
            job,
            lambda: self._record(
                job, spec, error, policy, attempt, max_attempts, breaker, more, following
            ),
        )

    async def _persist(
        self, job: ClaimedJob, write: Callable[[], Awaitable[str | None]]
    ) -> str | None:
        """Writes an attempt's outcome, waiting out a database outage (a restart, a failover)
        for as long as the lease lasts: the work is done, and an outcome left unwritten would
        let the lease expire and the work run again (a second message, a second event)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lease
        delay = OUTCOME_RETRY_FIRST_S
        while True:
            try:
                return await write()
            except Exception as exc:
                if not is_database_outage(exc) or loop.time() + delay > deadline:
                    raise
                _log.warning("job %s: writing its outcome waits for the database (%s)", job.id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, OUTCOME_RETRY_MAX_S)

    async def _record(
        self,
        job: ClaimedJob,
        spec: HandlerSpec,
        error: BaseException | None,
        policy: RetryPolicy,
        attempt: int,
        max_attempts: int,
        breaker: CircuitBreaker | None,
        more: int,
        following: list[ClaimedJob],
    ) -> str | None:
        """Stores how the attempt ended; returns that outcome (None: the lease was lost)."""
        if isinstance(error, CircuitOpen):
            await self._postpone(job, error, breaker)
            return "postponed"
        if error is None:
            async with self._db.autocommit() as conn:
                if more > 0:
                    done, claimed = await queue.complete_and_claim(
                        conn,
                        job.id,
                        self.id,
                        attempt=attempt,
                        max_attempts=max_attempts,
                        limit=more,
                        lease_seconds=self._lease,
                        operations=self._registry.operations,
                        now=self._now(),
                    )
                    following[:] = claimed
                else:
                    done = await queue.complete(
                        conn, job.id, self.id, attempt=attempt, max_attempts=max_attempts
                    )
            if not done:
                _log.warning("job %s finished after its lease was lost", job.id)
                return None
            return "completed"
        if _retries(spec, error) and attempt < max_attempts:
            delay = next_delay(policy, attempt, self._rng, retry_after_of(error))
            async with self._db.autocommit() as conn:
                await queue.retry_later(
                    conn,
                    job.id,
                    self.id,
                    attempt=attempt,
                    max_attempts=max_attempts,
                    delay_s=delay,
                    error=queue.short_error(error),
                    now=self._now(),
                )
            return "retry"
        if not isinstance(error, DomainError | ProviderError):
            # Not an answer anyone classified: keep its traceback (redacted like every log).
            _log.error("job %s (%s) failed unexpectedly", job.id, job.operation, exc_info=error)
        await self._dead_letter(job, spec, attempt, max_attempts, queue.short_error(error))
        return "dead_letter"

    async def _run_handler(
        self,
        job: Job,
        spec: HandlerSpec,
        policy: RetryPolicy,
        breaker: CircuitBreaker | None,
        permit: Permit | None,
    ) -> BaseException | None:
        self._leases.hold(job.id)
        error: BaseException | None = None
        try:
            with self._breakers.held(spec.breaker):
                async with asyncio.timeout(policy.timeout_s):
                    await spec.handler(job)
        except TimeoutError as exc:
            error = ProviderTimeout(
                f"attempt {job.attempt} took longer than {policy.timeout_s:g}s",
                provider=spec.breaker or spec.operation.name,
            )
            error.__cause__ = exc
        except Exception as exc:
            error = exc
        except BaseException as exc:  # cancelled: no verdict on the provider
            if breaker is not None and permit is not None:
                breaker.settle(permit, exc)
            raise
        finally:
            self._leases.drop(job.id)
        if breaker is not None and permit is not None:
            breaker.settle(permit, error)
        return error

    async def claim(self, limit: int) -> list[ClaimedJob]:
        """Leases up to `limit` due jobs of the registered operations to this worker."""
        if limit <= 0:
            return []
        async with self._db.autocommit() as conn:
            return await queue.claim(
                conn,
                worker=self.id,
                limit=limit,
                lease_seconds=self._lease,
                operations=self._registry.operations,
                now=self._now(),
            )

    async def _postpone(
        self, job: ClaimedJob, exc: CircuitOpen, breaker: CircuitBreaker | None
    ) -> None:
        delay = exc.retry_after
        if delay is None:
            delay = breaker.config.reset_timeout_s if breaker is not None else self._poll
        async with self._db.autocommit() as conn:
            await queue.postpone(conn, job.id, self.id, delay_s=delay, now=self._now())

    async def release(self, job: ClaimedJob, reason: str | None) -> None:
        async with self._db.autocommit() as conn:
            await queue.postpone(conn, job.id, self.id, delay_s=0.0, now=self._now(), reason=reason)

    async def _dead_letter(
        self, job: ClaimedJob, spec: HandlerSpec, attempts: int, max_attempts: int, error: str
    ) -> None:
        caller = tenant_service(job.tenant_id)
        async with self._db.unit_of_work(caller) as session:
            if not await queue.dead_letter(
                session, job.id, self.id, attempt=attempts, max_attempts=max_attempts, error=error
            ):
                _log.warning("job %s failed after its lease was lost", job.id)
                return
            facts: dict[str, object] = {
                "operacao": job.operation,
                "tipo": job.tipo,
                "destino": job.destino,
                "tentativas": attempts,
                "erro": error,
            }
            await self._on_dead_letter(session, caller, job, facts)
            if spec.on_dead_letter is not None:
                await spec.on_dead_letter(session, _as_job(job, attempts, max_attempts), error)


def _as_job(
    job: ClaimedJob, attempt: int, max_attempts: int, completion: Completion | None = None
) -> Job:
    return Job(
        id=job.id,
        tenant_id=job.tenant_id,
        operation=job.operation,
        tipo=job.tipo,
        destino=job.destino,
        payload=job.payload,
        idempotency_key=job.idempotency_key,
        attempt=attempt,
        max_attempts=max_attempts,
        completion=completion,
    )


def job_error(job: ClaimedJob) -> str:
    return f"no attempts left after {job.tentativas} (the last worker was lost mid-attempt)"


def _retries(spec: HandlerSpec, error: BaseException) -> bool:
    """Is another attempt the answer to `error`? A retryable failure, or the database lost
    under a handler whose operation may run again (`Operation.repeatable`): its transaction
    rolled back, so the next attempt starts from where this one did."""
    if is_retryable(error):
        return True
    if isinstance(error, ProviderError | DomainError):
        return False  # an answer, not an outage: its own `retryable` said no
    return spec.operation.repeatable and is_database_outage(error)
