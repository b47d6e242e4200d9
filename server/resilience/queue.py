"""The durable queue's SQL: claiming, finishing, postponing and dead-lettering jobs.

Claims cross tenants through the `app_claim_jobs_at` definer function (migrations 0002, 0015);
a claimed job's outcome (completed, retry, postponed) and its lease renewals go through the
definer functions of migration 0024, one prepared statement each on the bare asyncpg
connection, touching only rows leased to the worker. A dead letter, whose hooks write audit
entries and alerts, runs in the job's own tenant's unit of work. Each state change is guarded
by the lease (`lease_owner = worker`, `status = 'processing'`): a worker whose lease ran out
and whose job went to another worker changes nothing when it finally returns.

Time: `now=None` means the database's now(), the one clock every replica shares; tests pass
a fake clock's time instead.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
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


def db_time(clock: Clock) -> dt.datetime | None:
    """The `now` to pass here: None (the database's now()) for the real clock, else the
    clock's time (a FakeClock in tests)."""
    return None if isinstance(clock, SystemClock) else clock.now()


def short_error(exc: BaseException) -> str:
    """What `ultimo_erro` keeps: class and message, secrets masked, bounded."""
    message = f"{type(exc).__name__}: {exc}".strip()
    message = redact(message)
    return message if len(message) <= _MAX_ERROR else message[: _MAX_ERROR - 1] + "…"


_COLUMNS = (
    "id",
    "organizacao_id",
    "operacao",
    "tipo",
    "destino",
    "payload",
    "idempotency_key",
    "tentativas",
    "max_tentativas",
    "request_id",
    "traceparent",
    "criado_em",
)


def _select(alias: str) -> str:
    # payload as text: the pooled connections' jsonb codec belongs to SQLAlchemy.
    return ", ".join(
        f"{alias}.payload::text AS payload" if c == "payload" else f"{alias}.{c}" for c in _COLUMNS
    )


_CLAIM = f"SELECT {_select('c')} FROM app_claim_jobs_at($1, $2, $3, $4, $5) AS c"
# Completes one job and claims the next ones in one round trip; the LEFT JOIN keeps the
# completion's answer when nothing is due.
_COMPLETE_AND_CLAIM = (
    f"SELECT f.done, {_select('c')} FROM app_complete_job($1, $2, $3, $4) AS f(done)"
    " LEFT JOIN LATERAL app_claim_jobs_at($2, $5, $6, $7, $8) AS c ON true"
)


def _claimed(record: asyncpg.Record) -> ClaimedJob:
    return ClaimedJob(
        id=record["id"],
        tenant_id=record["organizacao_id"],
        operation=record["operacao"],
        tipo=record["tipo"],
        destino=record["destino"],
        payload=dict(json.loads(record["payload"]) or {}),
        idempotency_key=record["idempotency_key"],
        tentativas=record["tentativas"],
        max_tentativas=record["max_tentativas"],
        request_id=record["request_id"],
        traceparent=record["traceparent"],
        created_at=record["criado_em"],
    )


async def claim(
    conn: asyncpg.Connection,
    *,
    worker: str,
    limit: int,
    lease_seconds: int,
    operations: Sequence[str],
    now: dt.datetime | None,
) -> list[ClaimedJob]:
    """Leases up to `limit` due jobs of `operations`, oldest due first, in one round trip."""
    if limit <= 0 or not operations:
        return []
    records = await conn.fetch(_CLAIM, worker, limit, lease_seconds, list(operations), now)
    return [_claimed(r) for r in records]


async def complete(
    conn: asyncpg.Connection, job_id: uuid.UUID, worker: str, *, attempt: int, max_attempts: int
) -> bool:
    """Marks a leased job completed. False when the lease was lost (someone else has it).

    `conn` may be inside a tenant's transaction: the completion then commits or rolls back
    with that transaction's other writes."""
    return bool(
        await conn.fetchval(
            "SELECT app_complete_job($1, $2, $3, $4)", job_id, worker, attempt, max_attempts
        )
    )


async def complete_and_claim(
    conn: asyncpg.Connection,
    job_id: uuid.UUID,
    worker: str,
    *,
    attempt: int,
    max_attempts: int,
    limit: int,
    lease_seconds: int,
    operations: Sequence[str],
    now: dt.datetime | None,
) -> tuple[bool, list[ClaimedJob]]:
    """`complete`, then `claim` of up to `limit` jobs, in one round trip: a worker with a
    backlog pays one statement per job."""
    records = await conn.fetch(
        _COMPLETE_AND_CLAIM,
        job_id,
        worker,
        attempt,
        max_attempts,
        limit,
        lease_seconds,
        list(operations),
        now,
    )
    done = bool(records and records[0]["done"])
    return done, [_claimed(r) for r in records if r["id"] is not None]


async def retry_later(
    conn: asyncpg.Connection,
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
    return bool(
        await conn.fetchval(
            "SELECT app_retry_job($1, $2, $3, $4, $5, $6, $7)",
            job_id,
            worker,
            attempt,
            max_attempts,
            error,
            float(delay_s),
            now,
        )
    )


async def postpone(
    conn: asyncpg.Connection,
    job_id: uuid.UUID,
    worker: str,
    *,
    delay_s: float,
    now: dt.datetime | None,
    reason: str | None = None,
) -> bool:
    """Back to pending without spending an attempt (open circuit, shutdown)."""
    return bool(
        await conn.fetchval(
            "SELECT app_postpone_job($1, $2, $3, $4, $5)",
            job_id,
            worker,
            float(delay_s),
            now,
            reason,
        )
    )


async def renew_leases(
    conn: asyncpg.Connection,
    job_ids: Sequence[uuid.UUID],
    worker: str,
    *,
    lease_seconds: int,
    now: dt.datetime | None,
) -> set[uuid.UUID]:
    """Extends the leases of running jobs; returns the ids still held (a missing one went to
    another worker)."""
    records = await conn.fetch(
        "SELECT * FROM app_renew_job_leases($1, $2, $3, $4)",
        list(job_ids),
        worker,
        float(lease_seconds),
        now,
    )
    return {r[0] for r in records}


_LEASED = "id = :id AND lease_owner = :w AND status = 'processing'"
_AT = "COALESCE(CAST(:now AS timestamptz), now())"


async def dead_letter(
    session: AsyncSession,
    job_id: uuid.UUID,
    worker: str,
    *,
    attempt: int,
    max_attempts: int,
    error: str,
) -> bool:
    """status failed: the dead-letter queue, until an admin retries or discards it. In the
    tenant's unit of work (its hooks audit, alert and settle the job's rows there)."""
    result = await session.execute(
        text(
            "UPDATE eventos_pendentes SET status = 'failed', tentativas = :a,"
            " max_tentativas = :m, ultimo_erro = :err, lease_owner = NULL,"
            f" lease_expires_at = NULL WHERE {_LEASED}"
        ),
        {"id": job_id, "w": worker, "a": attempt, "m": max_attempts, "err": error},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


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
