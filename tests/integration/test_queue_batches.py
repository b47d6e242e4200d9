"""The queue's hot path: completions that claim the next jobs, one lease keeper instead of a
heartbeat per job, completion inside a handler's own transaction."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from server.providers.errors import ProviderServerError
from server.resilience import queue
from server.resilience.breaker import BreakerRegistry
from server.resilience.budget import tenant_service
from server.resilience.clock import SystemClock
from server.resilience.jobs import Job, JobRegistry
from server.resilience.operations import Operation
from server.resilience.policies import POLICIES
from server.resilience.worker import Worker
from tests.support.jobs import add_job, ahead_clock, job_row, rows, unique_op
from tests.support.whatsapp_stack import poll

JOBS = 40


def _spy(monkeypatch: pytest.MonkeyPatch, name: str) -> list[Any]:
    """Records each call of queue.<name> (still made) with its job ids."""
    calls: list[Any] = []
    real = getattr(queue, name)

    async def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1:2] or kwargs.get("limit"))
        return await real(*args, **kwargs)

    monkeypatch.setattr(queue, name, spy)
    return calls


async def _until(check: Any) -> None:
    async def met() -> bool | None:
        return True if await check() else None

    await poll(met, within=20)


async def test_a_backlog_is_drained_one_statement_per_job(
    db, make_tenant, owner_engine, monkeypatch
):
    tenant = await make_tenant()
    op = unique_op("backlog")
    running, most = 0, 0
    ran: list[uuid.UUID] = []

    async def handler(job: Job) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0)
        ran.append(job.id)
        running -= 1

    registry = JobRegistry()
    registry.register(Operation(op, POLICIES["lead_processing"]), handler)
    ids = [await add_job(db, tenant.id, op) for _ in range(JOBS)]
    claims = _spy(monkeypatch, "claim")
    chained = _spy(monkeypatch, "complete_and_claim")
    completes = _spy(monkeypatch, "complete")
    clock = SystemClock()
    worker = Worker(db, registry, BreakerRegistry(clock, {}), clock, concurrency=4)
    await worker.start()
    try:

        async def all_done() -> bool:
            done = await rows(
                owner_engine,
                "SELECT count(*) AS n FROM eventos_pendentes WHERE operacao = :op"
                " AND status = 'completed'",
                op=op,
            )
            return bool(done[0].n == JOBS)

        await _until(all_done)
    finally:
        await worker.stop(grace=2)

    assert sorted(ran) == sorted(ids) and most <= 4
    # Each completion claimed the next job in its own round trip: about one statement per
    # job, where a claim and a completion each would be two.
    statements = len(claims) + len(chained) + len(completes)
    assert len(chained) == JOBS and statements < JOBS * 1.25, (claims, completes)
    final = await rows(
        owner_engine,
        "SELECT status, tentativas, lease_owner FROM eventos_pendentes WHERE operacao = :op",
        op=op,
    )
    assert {(r.status, r.tentativas, r.lease_owner) for r in final} == {("completed", 1, None)}


async def test_only_jobs_running_past_a_third_of_the_lease_are_renewed_in_one_statement(
    db, make_tenant, owner_engine, monkeypatch
):
    tenant = await make_tenant()
    clock = ahead_clock()
    short_op, long_op = unique_op("short"), unique_op("long")
    release = asyncio.Event()
    started: set[uuid.UUID] = set()

    async def short(job: Job) -> None:
        return None

    async def long(job: Job) -> None:
        started.add(job.id)
        await release.wait()

    registry = JobRegistry()
    registry.register(Operation(short_op, POLICIES["audience_sync"]), short)
    registry.register(Operation(long_op, POLICIES["audience_sync"]), long)
    renewals = _spy(monkeypatch, "renew_leases")
    shorts = [await add_job(db, tenant.id, short_op) for _ in range(3)]
    longs = [await add_job(db, tenant.id, long_op) for _ in range(2)]
    worker = Worker(
        db,
        registry,
        BreakerRegistry(clock, {}),
        clock,
        concurrency=8,
        lease_seconds=6,
        poll_interval=0.05,
    )
    await worker.start()
    try:

        async def shorts_done_longs_running() -> bool:
            states = [(await job_row(owner_engine, j)).status for j in shorts]
            return states == ["completed"] * 3 and started == set(longs)

        await _until(shorts_done_longs_running)
        before = {j: (await job_row(owner_engine, j)).lease_expires_at for j in longs}
        assert renewals == []  # nothing ran for the short jobs
        clock.advance(2.5)  # past a third of the lease: one round renews both long jobs

        async def renewed() -> bool:
            now = [(await job_row(owner_engine, j)).lease_expires_at for j in longs]
            return all(after > before[j] for after, j in zip(now, longs, strict=True))

        await _until(renewed)
        assert len(renewals) == 1 and sorted(renewals[0][0]) == sorted(longs)
    finally:
        release.set()
        await worker.stop(grace=2)
    for job_id in longs:
        assert (await job_row(owner_engine, job_id)).status == "completed"


async def test_a_handler_completes_its_job_with_its_own_last_write(
    db, make_tenant, owner_engine, monkeypatch
):
    """The result and the completion commit together: a transaction that fails after the
    completion takes both back, and the attempt is retried like any failed one."""
    tenant = await make_tenant()
    clock = ahead_clock()
    op = unique_op("own-write")
    fail_once = [True]

    async def handler(job: Job) -> None:
        async with db.plain_unit_of_work(tenant_service(job.tenant_id)) as pg:
            await pg.execute(
                "INSERT INTO contatos (id, organizacao_id, nome) VALUES ($1, $2, $3)",
                uuid.uuid4(),
                job.tenant_id,
                f"contact of {job.id}",
            )
            await job.complete_within(pg)
            if fail_once.pop() if fail_once else False:
                raise ProviderServerError("write failed", provider="test", status_code=503)

    registry = JobRegistry()
    registry.register(Operation(op, POLICIES["whatsapp_send"]), handler)
    job_id = await add_job(db, tenant.id, op, max_attempts=3)
    completes = _spy(monkeypatch, "complete")
    worker = Worker(db, registry, BreakerRegistry(clock, {}), clock)

    async def contacts() -> int:
        found = await rows(
            owner_engine,
            "SELECT count(*) AS n FROM contatos WHERE nome = :n",
            n=f"contact of {job_id}",
        )
        return int(found[0].n)

    await worker.run_once()
    row = await job_row(owner_engine, job_id)
    assert (row.status, row.tentativas, await contacts()) == ("pending", 1, 0)
    assert "ProviderServerError" in row.ultimo_erro

    clock.advance(60)
    await worker.run_once()
    row = await job_row(owner_engine, job_id)
    assert (row.status, row.tentativas, row.lease_owner, await contacts()) == (
        "completed",
        2,
        None,
        1,
    )
    assert len(completes) == 2  # each attempt's completion ran inside the handler only


async def test_outbox_records_stay_inside_the_callers_tenant(db, make_tenant):
    mine, other = await make_tenant(), await make_tenant()
    async with db.plain_unit_of_work(tenant_service(mine.id)) as pg:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await pg.fetch(
                "SELECT * FROM record_outbox_change($1, $2, 'MESSAGE_STATUS', NULL, '{}',"
                " 'webhook_saida', 'outbound_webhook', 5, true, NULL, NULL)",
                uuid.uuid4(),
                other.id,
            )


async def test_stopping_mid_backlog_leaves_no_job_leased(db, make_tenant, owner_engine):
    """Completions stop claiming once the worker stops: every job ends completed, or pending
    and unleased with no attempt spent."""
    tenant = await make_tenant()
    op = unique_op("stop-mid-backlog")
    ran = 0

    async def handler(job: Job) -> None:
        nonlocal ran
        ran += 1
        await asyncio.sleep(0.02)

    registry = JobRegistry()
    registry.register(Operation(op, POLICIES["lead_processing"]), handler)
    for _ in range(JOBS):
        await add_job(db, tenant.id, op)
    clock = SystemClock()
    worker = Worker(db, registry, BreakerRegistry(clock, {}), clock, concurrency=4)
    await worker.start()

    async def some_ran() -> bool:
        return ran >= 8

    await _until(some_ran)
    await worker.stop(grace=5)
    final = await rows(
        owner_engine,
        "SELECT status, tentativas, lease_owner FROM eventos_pendentes WHERE operacao = :op",
        op=op,
    )
    assert {(r.status, r.tentativas, r.lease_owner) for r in final} <= {
        ("completed", 1, None),
        ("pending", 0, None),
    }
    assert sum(r.status == "completed" for r in final) == ran < JOBS
