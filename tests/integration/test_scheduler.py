"""The scheduler: intervals on the injected clock, one replica at a time, housekeeping tasks."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from sqlalchemy import text

from server.resilience.alerts import alert_retry_backlogs
from server.resilience.clock import FakeClock
from server.resilience.housekeeping import Retention, install_housekeeping, purge_old_rows
from server.resilience.queue import purge_expired
from server.resilience.scheduler import Scheduler
from tests.support.jobs import rows


def _namespace() -> str:
    return f"test.scheduler.{uuid.uuid4().hex[:8]}"


async def test_tasks_run_when_due_on_the_clock(db):
    clock = FakeClock()
    scheduler = Scheduler(db, clock, lock_namespace=_namespace())
    runs: list[str] = []

    async def fast() -> None:
        runs.append("fast")

    async def slow() -> None:
        runs.append("slow")

    scheduler.every("fast", 10, fast)
    scheduler.every("slow", 60, slow)
    try:
        assert await scheduler.run_due() == []  # first runs one interval after start
        clock.advance(10)
        assert await scheduler.run_due() == ["fast"]
        assert await scheduler.run_due() == []
        clock.advance(50)
        assert sorted(await scheduler.run_due()) == ["fast", "slow"]
    finally:
        await scheduler.stop()
    assert runs.count("fast") == 2 and runs.count("slow") == 1


async def test_a_task_runs_on_one_replica_at_a_time(db):
    namespace = _namespace()
    replicas = [Scheduler(db, FakeClock(), lock_namespace=namespace) for _ in range(2)]
    started, release = asyncio.Event(), asyncio.Event()
    runs: list[int] = []

    def task_for(n: int):  # type: ignore[no-untyped-def]
        async def task() -> None:
            runs.append(n)
            started.set()
            await release.wait()

        return task

    for n, replica in enumerate(replicas):
        replica.every("token_refresh", 60, task_for(n))
    try:
        first = asyncio.create_task(replicas[0].run_now("token_refresh"))
        await asyncio.wait_for(started.wait(), 5)
        assert await replicas[1].run_now("token_refresh") is False  # held by replica 0
        release.set()
        assert await first is True
        assert await replicas[1].run_now("token_refresh") is True  # free again
    finally:
        for replica in replicas:
            await replica.stop()
    assert runs == [0, 1]


async def test_the_loop_runs_tasks_and_stops(db):
    clock = FakeClock()
    scheduler = Scheduler(db, clock, tick=1, lock_namespace=_namespace())
    ran = asyncio.Event()

    async def task() -> None:
        ran.set()

    scheduler.every("tick", 5, task)
    await scheduler.start()
    try:
        for _ in range(6):
            clock.advance(1)
            await asyncio.sleep(0.01)
        await asyncio.wait_for(ran.wait(), 5)
    finally:
        await scheduler.stop()


async def test_housekeeping_is_installed(db):
    scheduler = Scheduler(db, FakeClock(), lock_namespace=_namespace())
    install_housekeeping(scheduler, db)
    assert scheduler.names == ["queue.purge_expired", "queue.retry_backlog_alerts"]


async def test_retry_backlog_alerts_once_per_tenant(db, make_tenant, owner_engine):
    busy, calm = await make_tenant(), await make_tenant()
    async with owner_engine.begin() as conn:
        for tenant, count in ((busy, 11), (calm, 10)):
            for _ in range(count):
                await conn.execute(
                    text(
                        "INSERT INTO eventos_pendentes (organizacao_id, tipo, operacao, destino,"
                        " payload, tentativas, status, proxima_tentativa) VALUES (:t, 'capi_event',"
                        " 'test.backlog', '', '{}', 1, 'pending', now() + interval '1 hour')"
                    ),
                    {"t": tenant.id},
                )
    alerted = await alert_retry_backlogs(db)
    assert busy.id in alerted and calm.id not in alerted
    assert busy.id not in await alert_retry_backlogs(db)  # one open alert per tenant
    alerts = await rows(
        owner_engine,
        "SELECT id, audience, details->>'pendentes' AS n FROM alerts"
        " WHERE organizacao_id = :t AND kind = 'retry_backlog'",
        t=busy.id,
    )
    assert [(a.audience, a.n) for a in alerts] == [("tenant_admin", "11")]

    async with owner_engine.begin() as conn:  # acknowledged: the next check may alert again
        await conn.execute(
            text("UPDATE alerts SET lido_em = now() WHERE id = :i"), {"i": alerts[0].id}
        )
    assert busy.id in await alert_retry_backlogs(db)


async def test_purge_drops_old_request_ids_states_and_finished_jobs(db, make_tenant, owner_engine):
    tenant = await make_tenant()
    old_rid, new_rid, state = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    async with owner_engine.begin() as conn:
        for request_id, age in ((old_rid, 8), (new_rid, 1)):
            await conn.execute(
                text(
                    "INSERT INTO idempotency_records"
                    " (organizacao_id, caller, request_id, rpc, criado_em)"
                    " VALUES (:t, 'service', :r, 'test', now() - make_interval(days => :d))"
                ),
                {"t": tenant.id, "r": request_id, "d": age},
            )
        await conn.execute(
            text(
                "INSERT INTO oauth_states (nonce, expires_at)"
                " VALUES (:n, now() - interval '2 days')"
            ),
            {"n": state},
        )
        job = await conn.scalar(
            text(
                "INSERT INTO eventos_pendentes (organizacao_id, tipo, operacao, destino, payload,"
                " status) VALUES (:t, 'x', 'test.purge', '', '{}', 'completed') RETURNING id"
            ),
            {"t": tenant.id},
        )
        # Without the trigger that keeps atualizado_em current (this session only).
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(
            text(
                "UPDATE eventos_pendentes SET atualizado_em = now() - interval '31 days'"
                " WHERE id = :i"
            ),
            {"i": job},
        )
    async with db.system() as session:
        counts = await purge_expired(session)
    assert counts["idempotency_records"] >= 1 and counts["oauth_states"] >= 1
    assert counts["jobs"] >= 1
    left = await rows(
        owner_engine,
        "SELECT request_id FROM idempotency_records WHERE organizacao_id = :t",
        t=tenant.id,
    )
    assert [r.request_id for r in left] == [new_rid]
    assert await rows(owner_engine, "SELECT 1 FROM oauth_states WHERE nonce = :n", n=state) == []
    assert await rows(owner_engine, "SELECT 1 FROM eventos_pendentes WHERE id = :i", i=job) == []


async def test_retention_keeps_what_is_not_handled_yet(db, make_tenant, owner_engine):
    tenant = await make_tenant()
    tag = uuid.uuid4().hex[:8]
    # (name, days old, verdict, processed, a job of its own still pending)
    inbox = [
        ("old_processed", 12, "accepted", True, False),
        ("old_rejected", 12, "rejected", False, False),
        ("old_done_by_job", 12, "accepted", False, False),
        ("old_waiting", 12, "accepted", False, True),
        ("recent", 2, "accepted", True, False),
    ]
    ids = {}
    async with owner_engine.begin() as conn:
        for name, age, verdict, processed, waiting in inbox:
            ids[name] = await conn.scalar(
                text(
                    "INSERT INTO webhook_inbox (organizacao_id, provider, provider_event_id,"
                    " body, verdict, received_at, processed_at) VALUES (:t, 'test', :e, 'x', :v,"
                    " now() - make_interval(days => :d),"
                    " CASE WHEN :p THEN now() - make_interval(days => :d) END) RETURNING id"
                ),
                {"t": tenant.id, "e": f"{tag}-{name}", "v": verdict, "d": age, "p": processed},
            )
            if waiting:
                await conn.execute(
                    text(
                        "INSERT INTO eventos_pendentes (organizacao_id, tipo, operacao, destino,"
                        " payload, proxima_tentativa) VALUES (:t, 'x', 'test.retention', '',"
                        " jsonb_build_object('inbox_id', CAST(:i AS text)),"
                        " now() + interval '1 hour')"
                    ),
                    {"t": tenant.id, "i": str(ids[name])},
                )
        jobs = {}
        for status in ("completed", "failed"):
            jobs[status] = await conn.scalar(
                text(
                    "INSERT INTO eventos_pendentes (organizacao_id, tipo, operacao, destino,"
                    " payload, status) VALUES (:t, 'x', 'test.retention', '', '{}', :s)"
                    " RETURNING id"
                ),
                {"t": tenant.id, "s": status},
            )
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(
            text(
                "UPDATE eventos_pendentes SET atualizado_em = now() - interval '12 days'"
                " WHERE id = ANY(:i)"
            ),
            {"i": list(jobs.values())},
        )

    counts = await purge_old_rows(
        db, Retention(finished_jobs=dt.timedelta(days=10), webhook_inbox=dt.timedelta(days=10))
    )
    assert counts["webhook_inbox"] >= 3 and counts["jobs"] >= 1
    left = await rows(
        owner_engine, "SELECT id FROM webhook_inbox WHERE organizacao_id = :t", t=tenant.id
    )
    assert {r.id for r in left} == {ids["old_waiting"], ids["recent"]}
    left_jobs = await rows(
        owner_engine,
        "SELECT status FROM eventos_pendentes WHERE organizacao_id = :t AND id = ANY(:i)",
        t=tenant.id,
        i=list(jobs.values()),
    )
    assert [j.status for j in left_jobs] == ["failed"]  # a dead letter waits for an admin
