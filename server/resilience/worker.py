"""Queue workers: claim due jobs, run their handlers under the retry policy, record the outcome.

One `Worker` per process runs up to `concurrency` jobs at a time. It wakes on the
`conexoes_jobs` NOTIFY (a job became due) and polls every `poll_interval` seconds for retries
coming due. Per job:

    circuit open      -> back to pending at the breaker's next probe; no attempt spent
    success           -> completed
    retryable error   -> pending, proxima_tentativa = now + next_delay (Retry-After honoured)
    final error / last attempt
                      -> failed (dead-lettered) + audit "job.dead_lettered" + tenant admin
                         alert + JOB_FAILED event, in one transaction

The attempt budget is the row's `max_tentativas`, except that on a job's first attempt a
tenant override of its policy's count (`configuracoes_extra.retry_config`) replaces it.
Each worker keeps a tenant's retry_config for RETRY_CONFIG_TTL_S seconds (one read per
tenant, not one per job): a changed override governs jobs this worker starts within that time.
A long job keeps its lease alive with a heartbeat; a worker that dies loses the lease and the
job is claimed again, the lost run counting as an attempt (migration 0002).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Mapping

import asyncpg
from sqlalchemy import select

from db.models import TenantSettings
from db.uow import Database
from server.audit import record_audit
from server.auth.caller import Caller, Role
from server.errors import CircuitOpen
from server.events import Event, publish
from server.providers.errors import ProviderTimeout
from server.resilience import queue
from server.resilience.alerts import raise_alert
from server.resilience.backoff import RandomSource, next_delay
from server.resilience.breaker import BreakerRegistry, CircuitBreaker, Permit
from server.resilience.classify import is_retryable, retry_after_of
from server.resilience.clock import Clock
from server.resilience.jobs import HandlerSpec, Job, JobRegistry
from server.resilience.policies import RetryPolicy, policy_for
from server.resilience.queue import ClaimedJob

_log = logging.getLogger(__name__)

PolicyLookup = Callable[[str, Mapping[str, object] | None], RetryPolicy]
RetryConfig = dict[str, object] | None

# How long a worker reuses a tenant's retry_config, and for how many tenants at most.
RETRY_CONFIG_TTL_S = 5.0
_RETRY_CONFIG_CACHE_MAX = 1024


def tenant_service(tenant_id: uuid.UUID) -> Caller:
    """The identity a worker acts as inside one tenant (RLS scopes it to that tenant)."""
    return Caller(role=Role.SERVICE, tenant_id=tenant_id)


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
    ) -> None:
        """Args:
        lease_seconds: how long a claim holds without a heartbeat (renewed every third).
        poll_interval: real seconds between claims when no NOTIFY arrives.
        policy_lookup: (policy name, tenant retry_config) -> policy; tests shorten timeouts.
        """
        if concurrency < 1 or lease_seconds < 1:
            raise ValueError("concurrency and lease_seconds must be at least 1")
        self._db = db
        self._registry = registry
        self._breakers = breakers
        self._clock = clock
        self._concurrency = concurrency
        self._lease = lease_seconds
        self._poll = poll_interval
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._rng = rng or random.Random()
        self._policy_lookup = policy_lookup
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._listener: asyncpg.Connection | None = None
        # tenant -> (monotonic time read, its retry_config): see RETRY_CONFIG_TTL_S
        self._retry_configs: dict[uuid.UUID, tuple[float, RetryConfig]] = {}

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
            await self._attempt(job)
        except asyncio.CancelledError:
            # Shutdown past the grace period: hand the job back without spending an attempt.
            await asyncio.shield(self._release(job, "worker stopped during attempt"))
            raise
        except Exception:
            # Our own bookkeeping failed (database down). The lease will expire and the job
            # will be claimed again; nothing is lost.
            _log.exception("recording the outcome of job %s failed", job.id)

    async def _attempt(self, job: ClaimedJob) -> None:
        spec = self._registry.get(job.operation)
        if spec is None:  # unregistered after the claim: leave it for a worker that has it
            await self._release(job, None)
            return
        policy, max_attempts = await self._budget(job, spec)
        attempt = job.tentativas + 1
        if attempt > max_attempts:
            # A worker died during the last attempt (the reclaim counted it): stop here.
            await self._dead_letter(job, attempt - 1, max_attempts, job_error(job))
            return
        breaker = self._breakers.get(spec.breaker) if spec.breaker else None
        permit: Permit | None = None
        if breaker is not None:
            try:
                permit = breaker.allow()
            except CircuitOpen as exc:
                await self._postpone(job, exc, breaker)
                return
        error = await self._run_handler(job, spec, policy, attempt, max_attempts, breaker, permit)
        if isinstance(error, CircuitOpen):
            await self._postpone(job, error, breaker)
        elif error is None:
            async with self._db.unit_of_work(tenant_service(job.tenant_id)) as session:
                if not await queue.complete(
                    session, job.id, self.id, attempt=attempt, max_attempts=max_attempts
                ):
                    _log.warning("job %s finished after its lease was lost", job.id)
        elif is_retryable(error) and attempt < max_attempts:
            delay = next_delay(policy, attempt, self._rng, retry_after_of(error))
            async with self._db.unit_of_work(tenant_service(job.tenant_id)) as session:
                await queue.retry_later(
                    session,
                    job.id,
                    self.id,
                    attempt=attempt,
                    max_attempts=max_attempts,
                    delay_s=delay,
                    error=queue.short_error(error),
                    now=self._now(),
                )
        else:
            await self._dead_letter(job, attempt, max_attempts, queue.short_error(error))

    async def _run_handler(
        self,
        job: ClaimedJob,
        spec: HandlerSpec,
        policy: RetryPolicy,
        attempt: int,
        max_attempts: int,
        breaker: CircuitBreaker | None,
        permit: Permit | None,
    ) -> BaseException | None:
        heartbeat = asyncio.create_task(self._heartbeat(job))
        error: BaseException | None = None
        try:
            with self._breakers.held(spec.breaker):
                async with asyncio.timeout(policy.timeout_s):
                    await spec.handler(
                        Job(
                            id=job.id,
                            tenant_id=job.tenant_id,
                            operation=job.operation,
                            tipo=job.tipo,
                            destino=job.destino,
                            payload=job.payload,
                            idempotency_key=job.idempotency_key,
                            attempt=attempt,
                            max_attempts=max_attempts,
                        )
                    )
        except TimeoutError as exc:
            error = ProviderTimeout(
                f"attempt {attempt} took longer than {policy.timeout_s:g}s",
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
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        if breaker is not None and permit is not None:
            breaker.settle(permit, error)
        return error

    async def _budget(self, job: ClaimedJob, spec: HandlerSpec) -> tuple[RetryPolicy, int]:
        retry_config = await self._retry_config(job.tenant_id)
        row = spec.operation.policy.operation
        policy = self._policy_lookup(row, retry_config)
        overridden = policy.max_attempts != self._policy_lookup(row, None).max_attempts
        if job.tentativas == 0 and overridden:
            return policy, policy.max_attempts
        return policy, job.max_tentativas

    async def _retry_config(self, tenant_id: uuid.UUID) -> RetryConfig:
        """The tenant's `configuracoes_extra.retry_config`, read at most every
        RETRY_CONFIG_TTL_S seconds per tenant."""
        now = time.monotonic()
        cached = self._retry_configs.get(tenant_id)
        if cached is not None and now - cached[0] < RETRY_CONFIG_TTL_S:
            return cached[1]
        async with self._db.unit_of_work(tenant_service(tenant_id)) as session:
            extra = await session.scalar(select(TenantSettings.configuracoes_extra))
        retry_config = (extra or {}).get("retry_config") if isinstance(extra, dict) else None
        if not isinstance(retry_config, dict):
            retry_config = None
        if len(self._retry_configs) >= _RETRY_CONFIG_CACHE_MAX:
            self._retry_configs = {
                t: v for t, v in self._retry_configs.items() if now - v[0] < RETRY_CONFIG_TTL_S
            }
            if len(self._retry_configs) >= _RETRY_CONFIG_CACHE_MAX:
                self._retry_configs.clear()
        self._retry_configs[tenant_id] = (now, retry_config)
        return retry_config

    async def _heartbeat(self, job: ClaimedJob) -> None:
        while True:
            await self._clock.sleep(self._lease / 3)
            try:
                async with self._db.unit_of_work(tenant_service(job.tenant_id)) as session:
                    kept = await queue.renew_lease(
                        session, job.id, self.id, lease_seconds=self._lease, now=self._now()
                    )
            except Exception as exc:
                _log.warning("renewing the lease of job %s failed: %s", job.id, exc)
                continue
            if not kept:
                _log.warning("job %s lost its lease; its result will be ignored", job.id)
                return

    async def _postpone(
        self, job: ClaimedJob, exc: CircuitOpen, breaker: CircuitBreaker | None
    ) -> None:
        delay = exc.retry_after
        if delay is None:
            delay = breaker.config.reset_timeout_s if breaker is not None else self._poll
        async with self._db.unit_of_work(tenant_service(job.tenant_id)) as session:
            await queue.postpone(session, job.id, self.id, delay_s=delay, now=self._now())

    async def _release(self, job: ClaimedJob, reason: str | None) -> None:
        async with self._db.unit_of_work(tenant_service(job.tenant_id)) as session:
            await queue.postpone(
                session, job.id, self.id, delay_s=0.0, now=self._now(), reason=reason
            )

    async def _dead_letter(
        self, job: ClaimedJob, attempts: int, max_attempts: int, error: str
    ) -> None:
        caller = tenant_service(job.tenant_id)
        async with self._db.unit_of_work(caller) as session:
            if not await queue.dead_letter(
                session, job.id, self.id, attempt=attempts, max_attempts=max_attempts, error=error
            ):
                _log.warning("job %s failed after its lease was lost", job.id)
                return
            facts = {
                "operacao": job.operation,
                "tipo": job.tipo,
                "destino": job.destino,
                "tentativas": attempts,
                "erro": error,
            }
            await record_audit(
                session,
                caller,
                "job.dead_lettered",
                entity_type="eventos_pendentes",
                entity_id=job.id,
                details=facts,
            )
            await raise_alert(
                session,
                tenant_id=job.tenant_id,
                audience="tenant_admin",
                kind="permanent_failure",
                severity="warning",
                message=f"{job.tipo}: falhou apos {attempts} tentativa(s): {error}",
                details={
                    "titulo": "Evento falhou definitivamente",
                    "entidade_tipo": "eventos_pendentes",
                    "entidade_id": str(job.id),
                    **facts,
                },
            )
            await publish(
                session, Event("JOB_FAILED", job.tenant_id, None, {"id": str(job.id), **facts})
            )


def job_error(job: ClaimedJob) -> str:
    return f"no attempts left after {job.tentativas} (the last worker was lost mid-attempt)"
