"""The durable queue's SQL: claiming, finishing, postponing and dead-lettering jobs.

Claims cross tenants through the `app_claim_jobs_at` definer function (migration 0002); every
other statement runs in the job's own tenant's unit of work, so row-level security holds for
workers too. Each state change is guarded by the lease (`lease_owner = worker`,
`status = 'processing'`): a worker whose lease ran out and whose job went to another worker
changes nothing when it finally returns.

Time: `now=None` means the database's now(), the one clock every replica shares; tests pass
a fake clock's time instead.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from server.errors import FailedPrecondition, NotFound
from server.resilience.clock import Clock, SystemClock
from server.security.redaction import redact

# Workers LISTEN here; migration 0002's trigger NOTIFYs whenever a job becomes due now.
JOBS_CHANNEL = "conexoes_jobs"
# The spec's alert: "> 10 eventos na fila de retry".
BACKLOG_ALERT_THRESHOLD = 10
_MAX_ERROR = 500


class EventNotFound(NotFound):
    reason = "EVENT_NOT_FOUND"


class EventNotFailed(FailedPrecondition):
    reason = "EVENT_NOT_FAILED"


@dataclass(frozen=True)
class ClaimedJob:
    """A row of eventos_pendentes as claimed (status processing, leased to this worker)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    operation: str
    tipo: str
    destino: str
    payload: dict[str, Any]
    idempotency_key: str
    tentativas: int
    max_tentativas: int
    request_id: str | None = None
    traceparent: str | None = None
    created_at: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: Row[Any]) -> ClaimedJob:
        return cls(
            id=row.id,
            tenant_id=row.organizacao_id,
            operation=row.operacao,
            tipo=row.tipo,
            destino=row.destino,
            payload=dict(row.payload or {}),
            idempotency_key=row.idempotency_key,
            tentativas=row.tentativas,
            max_tentativas=row.max_tentativas,
            request_id=getattr(row, "request_id", None),
            traceparent=getattr(row, "traceparent", None),
            created_at=getattr(row, "criado_em", None),
        )


def db_time(clock: Clock) -> dt.datetime | None:
    """The `now` to pass here: None (the database's now()) for the real clock, else the
    clock's time (a FakeClock in tests)."""
    return None if isinstance(clock, SystemClock) else clock.now()


def short_error(exc: BaseException) -> str:
    """What `ultimo_erro` keeps: class and message, secrets masked, bounded."""
    message = f"{type(exc).__name__}: {exc}".strip()
    message = redact(message)
    return message if len(message) <= _MAX_ERROR else message[: _MAX_ERROR - 1] + "…"


async def claim(
    session: AsyncSession,
    *,
    worker: str,
    limit: int,
    lease_seconds: int,
    operations: Sequence[str],
    now: dt.datetime | None,
) -> list[ClaimedJob]:
    """Leases up to `limit` due jobs of `operations` (a `Database.system()` session)."""
    if limit <= 0 or not operations:
        return []
    rows = await session.execute(
        text("SELECT * FROM app_claim_jobs_at(:w, :n, :lease, :ops, :now)"),
        {"w": worker, "n": limit, "lease": lease_seconds, "ops": list(operations), "now": now},
    )
    return [ClaimedJob.from_row(r) for r in rows]


_LEASED = "id = :id AND lease_owner = :w AND status = 'processing'"
_AT = "COALESCE(CAST(:now AS timestamptz), now())"


async def _update(session: AsyncSession, sets: str, params: dict[str, Any]) -> bool:
    result = await session.execute(
        text(f"UPDATE eventos_pendentes SET {sets} WHERE {_LEASED}"), params
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def complete(
    session: AsyncSession, job_id: uuid.UUID, worker: str, *, attempt: int, max_attempts: int
) -> bool:
    """Marks a leased job completed. False when the lease was lost (someone else has it)."""
    return await _update(
        session,
        "status = 'completed', tentativas = :a, max_tentativas = :m,"
        " lease_owner = NULL, lease_expires_at = NULL",
        {"id": job_id, "w": worker, "a": attempt, "m": max_attempts},
    )


async def retry_later(
    session: AsyncSession,
    job_id: uuid.UUID,
    worker: str,
    *,
    attempt: int,
    max_attempts: int,
    delay_s: float,
    error: str,
    now: dt.datetime | None,
) -> bool:
    """Back to pending after a failed attempt; the attempt is spent."""
    return await _update(
        session,
        "status = 'pending', tentativas = :a, max_tentativas = :m, ultimo_erro = :err,"
        f" proxima_tentativa = {_AT} + make_interval(secs => :delay),"
        " lease_owner = NULL, lease_expires_at = NULL",
        {
            "id": job_id,
            "w": worker,
            "a": attempt,
            "m": max_attempts,
            "err": error,
            "delay": delay_s,
            "now": now,
        },
    )


async def postpone(
    session: AsyncSession,
    job_id: uuid.UUID,
    worker: str,
    *,
    delay_s: float,
    now: dt.datetime | None,
    reason: str | None = None,
) -> bool:
    """Back to pending without spending an attempt (open circuit, shutdown)."""
    sets = (
        f"status = 'pending', proxima_tentativa = {_AT} + make_interval(secs => :delay),"
        " lease_owner = NULL, lease_expires_at = NULL"
    )
    params: dict[str, Any] = {"id": job_id, "w": worker, "delay": delay_s, "now": now}
    if reason is not None:
        sets += ", ultimo_erro = :err"
        params["err"] = reason
    return await _update(session, sets, params)


async def dead_letter(
    session: AsyncSession,
    job_id: uuid.UUID,
    worker: str,
    *,
    attempt: int,
    max_attempts: int,
    error: str,
) -> bool:
    """status failed: the dead-letter queue, until an admin retries or discards it."""
    return await _update(
        session,
        "status = 'failed', tentativas = :a, max_tentativas = :m, ultimo_erro = :err,"
        " lease_owner = NULL, lease_expires_at = NULL",
        {"id": job_id, "w": worker, "a": attempt, "m": max_attempts, "err": error},
    )


async def renew_lease(
    session: AsyncSession,
    job_id: uuid.UUID,
    worker: str,
    *,
    lease_seconds: int,
    now: dt.datetime | None,
) -> bool:
    """Extends a running job's lease. False: the lease is gone (another worker took it)."""
    return await _update(
        session,
        f"lease_expires_at = {_AT} + make_interval(secs => :lease)",
        {"id": job_id, "w": worker, "lease": float(lease_seconds), "now": now},
    )


# -- the dead-letter queue, for the Connections RPCs (caller's tenant unit of work) -------------

_JOB_COLUMNS = (
    "id, tipo, destino, payload, tentativas, max_tentativas, proxima_tentativa, ultimo_erro,"
    " status, idempotency_key, criado_em, atualizado_em"
)


async def get_job(session: AsyncSession, job_id: uuid.UUID) -> Row[Any]:
    row = (
        await session.execute(
            text(f"SELECT {_JOB_COLUMNS} FROM eventos_pendentes WHERE id = :id FOR UPDATE"),
            {"id": job_id},
        )
    ).first()
    if row is None:
        raise EventNotFound("no such event", metadata={"id": str(job_id)})
    return row


async def retry_failed(
    session: AsyncSession, job_id: uuid.UUID, *, reset_attempts: bool, now: dt.datetime | None
) -> Row[Any]:
    """failed -> pending, due now. With `reset_attempts` it gets a full new budget (attempts
    back to 0); without, what is left of its budget, and at least one more attempt."""
    row = await get_job(session, job_id)
    if row.status != "failed":
        raise EventNotFailed(f"event is {row.status}, not failed", metadata={"id": str(job_id)})
    sets = f"status = 'pending', proxima_tentativa = {_AT}"
    if reset_attempts:
        sets += ", tentativas = 0"
    else:
        sets += ", max_tentativas = GREATEST(max_tentativas, tentativas + 1)"
    await session.execute(
        text(f"UPDATE eventos_pendentes SET {sets} WHERE id = :id"), {"id": job_id, "now": now}
    )
    return await get_job(session, job_id)


async def discard_failed(session: AsyncSession, job_id: uuid.UUID) -> Row[Any]:
    row = await get_job(session, job_id)
    if row.status != "failed":
        raise EventNotFailed(f"event is {row.status}, not failed", metadata={"id": str(job_id)})
    await session.execute(
        text("UPDATE eventos_pendentes SET status = 'discarded' WHERE id = :id"), {"id": job_id}
    )
    return await get_job(session, job_id)


async def tenant_backlog(session: AsyncSession) -> int:
    """Jobs of the session's tenant waiting for a retry (failed once, still pending)."""
    value = await session.scalar(
        text("SELECT count(*) FROM eventos_pendentes WHERE status = 'pending' AND tentativas > 0")
    )
    return int(value or 0)


async def backlog_by_tenant(
    session: AsyncSession, more_than: int = BACKLOG_ALERT_THRESHOLD
) -> list[tuple[uuid.UUID, int]]:
    """Tenants with more than `more_than` jobs waiting for a retry (a system session)."""
    rows = await session.execute(text("SELECT * FROM app_job_backlog(:n)"), {"n": more_than})
    return [(r.organizacao_id, int(r.pendentes)) for r in rows]


async def purge_expired(
    session: AsyncSession,
    *,
    request_ids_older_than: dt.timedelta = dt.timedelta(days=7),
    finished_jobs_older_than: dt.timedelta = dt.timedelta(days=30),
) -> dict[str, int]:
    """Deletes old request ids, dead OAuth states and long-finished jobs (a system session)."""
    row = (
        await session.execute(
            text("SELECT * FROM app_purge_expired(:ids, :jobs)"),
            {"ids": request_ids_older_than, "jobs": finished_jobs_older_than},
        )
    ).one()
    return {
        "idempotency_records": int(row.idempotency_records),
        "oauth_states": int(row.oauth_states),
        "jobs": int(row.jobs),
    }
