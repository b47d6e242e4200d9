"""Helpers for queue tests: a fake clock ahead of the database, job rows read as the owner."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.uow import Database
from server.auth.caller import Caller, Role
from server.resilience.clock import FakeClock
from server.resilience.jobs import enqueue
from server.resilience.operations import Operation
from server.resilience.policies import POLICIES


def ahead_clock(minutes: float = 5) -> FakeClock:
    """A FakeClock a little ahead of the real time, so jobs enqueued at the database's now()
    are already due for it; tests then move it forward by hand."""
    return FakeClock(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes))


def unique_op(prefix: str) -> str:
    """Operation names per test: other tests' workers only claim operations they registered."""
    return f"test.{prefix}.{uuid.uuid4().hex[:8]}"


async def add_job(
    db: Database,
    tenant_id: uuid.UUID,
    operation: str | Operation,
    *,
    payload: Mapping[str, Any] | None = None,
    max_attempts: int | None = None,
    tipo: str | None = None,
    key: str | None = None,
) -> uuid.UUID:
    async with db.unit_of_work(Caller(role=Role.SERVICE, tenant_id=tenant_id)) as session:
        job_id = await enqueue(
            session,
            tenant_id=tenant_id,
            # A bare name is a test-only job type: the inbound row's budget unless told.
            operation=(
                operation
                if isinstance(operation, Operation)
                else Operation(operation, POLICIES["inbound_event"])
            ),
            payload=dict(payload or {}),
            idempotency_key=key or uuid.uuid4().hex,
            tipo=tipo,
            max_attempts=max_attempts,
        )
    assert job_id is not None
    return job_id


async def job_row(owner: AsyncEngine, job_id: uuid.UUID) -> Any:
    async with owner.connect() as conn:
        return (
            await conn.execute(
                text("SELECT * FROM eventos_pendentes WHERE id = :id"), {"id": job_id}
            )
        ).one()


async def rows(owner: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with owner.connect() as conn:
        return list(await conn.execute(text(sql), params))
