"""Two workers on one queue: every job runs exactly once, never on both at the same time."""

from __future__ import annotations

import asyncio
import time
import uuid

from server.resilience.breaker import BreakerRegistry
from server.resilience.clock import SystemClock
from server.resilience.jobs import Job, JobRegistry
from server.resilience.operations import Operation
from server.resilience.policies import POLICIES
from server.resilience.worker import Worker
from tests.support.jobs import add_job, rows, unique_op

JOBS = 60


async def test_two_workers_never_run_the_same_job(db, make_tenant, owner_engine):
    tenant = await make_tenant()
    clock = SystemClock()
    op = unique_op("pair")
    runs: list[tuple[uuid.UUID, str, float, float]] = []
    running: set[uuid.UUID] = set()
    overlaps: list[uuid.UUID] = []

    def handler_for(name: str):  # type: ignore[no-untyped-def]
        async def handler(job: Job) -> None:
            if job.id in running:
                overlaps.append(job.id)
            running.add(job.id)
            start = time.monotonic()
            await asyncio.sleep(0.01)
            running.discard(job.id)
            runs.append((job.id, name, start, time.monotonic()))

        return handler

    workers = []
    for name in ("a", "b"):
        registry = JobRegistry()
        registry.register(Operation(op, POLICIES["lead_processing"]), handler_for(name))
        workers.append(
            Worker(
                db,
                registry,
                BreakerRegistry(clock, {}),
                clock,
                concurrency=4,
                poll_interval=0.2,
                worker_id=f"pair-{name}",
            )
        )
    for worker in workers:
        await worker.start()
    try:
        # Enqueued while both are idle: the NOTIFY wakes them, both race for the same rows.
        ids = await asyncio.gather(*(add_job(db, tenant.id, op) for _ in range(JOBS)))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done = await rows(
                owner_engine,
                "SELECT count(*) AS n FROM eventos_pendentes WHERE operacao = :op"
                " AND status = 'completed'",
                op=op,
            )
            if done[0].n == JOBS:
                break
            await asyncio.sleep(0.05)
    finally:
        for worker in workers:
            await worker.stop(grace=2)

    assert overlaps == []
    ran = [r[0] for r in runs]
    assert sorted(ran) == sorted(ids)  # each job exactly once
    assert len(set(ran)) == JOBS
    assert {r[1] for r in runs} == {"a", "b"}  # both took part
    final = await rows(
        owner_engine,
        "SELECT status, tentativas, lease_owner FROM eventos_pendentes WHERE operacao = :op",
        op=op,
    )
    assert {(r.status, r.tentativas, r.lease_owner) for r in final} == {("completed", 1, None)}
