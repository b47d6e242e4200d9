"""The worker against real PostgreSQL with a fake clock: retry table, final errors, breakers."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import defaultdict
from dataclasses import replace

import asyncpg
import pytest
from sqlalchemy import text

from server.errors import CircuitOpen
from server.providers.errors import (
    ProviderAuthError,
    ProviderPermissionDenied,
    ProviderRateLimited,
    ProviderRejected,
    ProviderServerError,
)
from server.resilience.backoff import delay_bounds
from server.resilience.breaker import BreakerConfig, BreakerRegistry
from server.resilience.budget import tenant_service
from server.resilience.jobs import Job, JobRegistry, before_the_provider
from server.resilience.operations import Operation
from server.resilience.policies import POLICIES, policy_for
from server.resilience.worker import Worker
from tests.support.jobs import add_job, ahead_clock, job_row, rows, unique_op

EPS = 0.002  # timestamps are stored to the microsecond


def make_worker(db, registry, clock, breakers=None, **kw) -> Worker:  # type: ignore[no-untyped-def]
    return Worker(
        db,
        registry,
        breakers or BreakerRegistry(clock, {}),
        clock,
        rng=random.Random(7),
        **{"concurrency": 16, **kw},
    )


async def test_each_policy_row_runs_its_attempts_then_dead_letters(db, make_tenant, owner_engine):
    tenant = await make_tenant()
    clock = ahead_clock()
    registry = JobRegistry()
    seen: dict[str, list[int]] = defaultdict(list)
    jobs: dict[str, uuid.UUID] = {}
    for name, policy in POLICIES.items():

        async def always_503(job: Job, name: str = name) -> None:
            seen[name].append(job.attempt)
            raise ProviderServerError("upstream down", provider="fake", status_code=503)

        op = unique_op(name)
        registry.register(Operation(op, POLICIES[name]), always_503)
        jobs[name] = await add_job(db, tenant.id, op, max_attempts=policy.max_attempts, tipo=name)
    worker = make_worker(db, registry, clock)

    for attempt in range(1, max(p.max_attempts for p in POLICIES.values()) + 1):
        await worker.run_once()
        longest = 0.0
        for name, job_id in jobs.items():
            row = await job_row(owner_engine, job_id)
            policy = POLICIES[name]
            if attempt < policy.max_attempts:
                assert row.status == "pending", name
                assert row.tentativas == attempt
                waited = (row.proxima_tentativa - clock.now()).total_seconds()
                low, high = delay_bounds(policy, attempt)
                assert low - EPS <= waited <= high + EPS, (name, attempt, waited)
                assert "ProviderServerError" in row.ultimo_erro
                longest = max(longest, waited)
            elif attempt == policy.max_attempts:
                assert row.status == "failed", name
        clock.advance(longest + 0.01)

    for name, job_id in jobs.items():
        row = await job_row(owner_engine, job_id)
        assert row.status == "failed"
        assert row.tentativas == POLICIES[name].max_attempts
        assert row.lease_owner is None
        assert seen[name] == list(range(1, POLICIES[name].max_attempts + 1))
    ids = [str(j) for j in jobs.values()]
    audit = await rows(
        owner_engine,
        "SELECT entity_id FROM audit_log WHERE action = 'job.dead_lettered'"
        " AND organizacao_id = :t",
        t=tenant.id,
    )
    assert sorted(a.entity_id for a in audit) == sorted(ids)
    alerts = await rows(
        owner_engine,
        "SELECT audience, severity, details->>'entidade_id' AS job FROM alerts"
        " WHERE kind = 'permanent_failure' AND organizacao_id = :t",
        t=tenant.id,
    )
    assert sorted(a.job for a in alerts) == sorted(ids)
    assert {a.audience for a in alerts} == {"tenant_admin"}


@pytest.mark.parametrize(
    "error",
    [
        ProviderRejected("bad payload", provider="fake", status_code=422),
        ProviderAuthError("token revoked", provider="fake", status_code=401),
        ProviderPermissionDenied("missing scope", provider="fake", status_code=403),
        ValueError("a bug in the handler"),
    ],
    ids=["rejected", "auth", "permission", "bug"],
)
async def test_final_errors_are_not_retried(db, make_tenant, owner_engine, error):
    tenant = await make_tenant()
    clock = ahead_clock()
    registry = JobRegistry()
    calls = []

    async def handler(job: Job) -> None:
        calls.append(job.attempt)
        raise error

    op = unique_op("final")
    registry.register(Operation(op, POLICIES["capi_event"]), handler)
    job_id = await add_job(db, tenant.id, op, max_attempts=5)
    await make_worker(db, registry, clock).run_once()
    row = await job_row(owner_engine, job_id)
    assert (row.status, row.tentativas, calls) == ("failed", 1, [1])
    assert type(error).__name__ in row.ultimo_erro


@pytest.mark.parametrize(
    ("repeatable", "status"), [(True, "pending"), (False, "failed")], ids=["repeatable", "send"]
)
async def test_the_database_lost_under_a_handler_retries_only_a_repeatable_operation(
    db, make_tenant, owner_engine, repeatable, status
):
    tenant = await make_tenant()
    clock = ahead_clock()
    registry = JobRegistry()

    async def loses_the_database(job: Job) -> None:
        # The handler's own connection dies under it, as in a PostgreSQL restart.
        async with db.unit_of_work(tenant_service(job.tenant_id)) as session:
            await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

    op = unique_op("db_lost")
    registry.register(
        Operation(op, POLICIES["capi_event"], repeatable=repeatable), loses_the_database
    )
    job_id = await add_job(db, tenant.id, op, max_attempts=5)
    await make_worker(db, registry, clock).run_once()
    row = await job_row(owner_engine, job_id)
    # A send that may have left keeps its dead letter; anything else waits out the outage.
    assert (row.status, row.tentativas) == (status, 1)
    assert row.ultimo_erro


async def test_a_connection_left_mid_exchange_is_an_outage_a_repeatable_job_waits_out(
    db, make_tenant, owner_engine
):
    tenant = await make_tenant()
    registry = JobRegistry()

    async def meets_a_broken_connection(job: Job) -> None:
        # What asyncpg raised once under a PostgreSQL restart (the statement never ran).
        raise asyncpg.exceptions.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        )

    op = unique_op("broken_protocol")
    registry.register(
        Operation(op, POLICIES["inbound_event"], repeatable=True), meets_a_broken_connection
    )
    job_id = await add_job(db, tenant.id, op, max_attempts=3)
    await make_worker(db, registry, ahead_clock()).run_once()
    row = await job_row(owner_engine, job_id)
    assert (row.status, row.tentativas) == ("pending", 1)


async def test_an_unexpected_error_is_dead_lettered_with_its_traceback_logged(
    db, make_tenant, owner_engine, caplog
):
    tenant = await make_tenant()
    registry = JobRegistry()

    async def has_a_bug(job: Job) -> None:
        raise KeyError("campo_que_nao_existe")

    op = unique_op("bug")
    registry.register(Operation(op, POLICIES["inbound_event"], repeatable=True), has_a_bug)
    job_id = await add_job(db, tenant.id, op, max_attempts=3)
    with caplog.at_level(logging.ERROR, logger="server.resilience.attempt"):
        await make_worker(db, registry, ahead_clock()).run_once()
    assert (await job_row(owner_engine, job_id)).status == "failed"
    (logged,) = [r for r in caplog.records if str(job_id) in r.getMessage()]
    assert logged.exc_info is not None and isinstance(logged.exc_info[1], KeyError)


async def test_a_send_that_loses_the_database_before_its_provider_call_is_retried(
    db, make_tenant, owner_engine
):
    tenant = await make_tenant()
    clock = ahead_clock()
    registry = JobRegistry()

    async def send(job: Job) -> None:
        with before_the_provider():  # nothing has left yet: safe to run again
            async with db.unit_of_work(tenant_service(job.tenant_id)) as session:
                await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

    op = unique_op("send_db_lost")
    registry.register(Operation(op, POLICIES["whatsapp_send"]), send)
    job_id = await add_job(db, tenant.id, op, max_attempts=3)
    await make_worker(db, registry, clock).run_once()
    row = await job_row(owner_engine, job_id)
    assert (row.status, row.tentativas) == ("pending", 1)
    assert row.ultimo_erro.startswith("DatabaseUnavailable")


async def test_retry_after_is_honoured(db, make_tenant, owner_engine):
    tenant = await make_tenant()
    clock = ahead_clock()
    registry = JobRegistry()

    async def throttled(job: Job) -> None:
        raise ProviderRateLimited("slow down", provider="fake", status_code=429, retry_after=120)

    op = unique_op("throttled")
    registry.register(Operation(op, POLICIES["whatsapp_send"]), throttled)
    job_id = await add_job(db, tenant.id, op, max_attempts=3)
    await make_worker(db, registry, clock).run_once()
    row = await job_row(owner_engine, job_id)
    waited = (row.proxima_tentativa - clock.now()).total_seconds()
    low, high = delay_bounds(POLICIES["whatsapp_send"], 1, retry_after=120)
    assert row.status == "pending" and low - EPS <= waited <= high + EPS and waited >= 120


async def test_attempt_timeout_is_enforced(db, make_tenant, owner_engine):
    tenant = await make_tenant()
    clock = ahead_clock()
    registry = JobRegistry()

    async def hangs(job: Job) -> None:
        await asyncio.sleep(30)

    op = unique_op("slow")
    registry.register(Operation(op, POLICIES["calendar_create"]), hangs)
    job_id = await add_job(db, tenant.id, op, max_attempts=3)
    worker = make_worker(
        db,
        registry,
        clock,
        policy_lookup=lambda name, cfg: replace(policy_for(name, cfg), timeout_s=0.2),
    )
    await asyncio.wait_for(worker.run_once(), timeout=5)
    row = await job_row(owner_engine, job_id)
    assert (row.status, row.tentativas) == ("pending", 1)
    assert "ProviderTimeout" in row.ultimo_erro


async def test_tenant_retry_config_sets_the_budget(db, make_tenant, owner_engine):
    tenant = await make_tenant()
    async with owner_engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(
            text(
                "INSERT INTO configuracoes_tenant (organizacao_id, configuracoes_extra) VALUES"
                ' (:t, \'{"retry_config": {"desativar_retry_capi": true}}\')'
            ),
            {"t": tenant.id},
        )
    clock = ahead_clock()
    registry = JobRegistry()

    async def down(job: Job) -> None:
        raise ProviderServerError("down", provider="fake", status_code=500)

    op = unique_op("capi")
    registry.register(Operation(op, POLICIES["capi_event"]), down)
    job_id = await add_job(db, tenant.id, op, max_attempts=5)
    await make_worker(db, registry, clock).run_once()
    row = await job_row(owner_engine, job_id)
    assert (row.status, row.tentativas, row.max_tentativas) == ("failed", 1, 1)


async def test_open_breaker_postpones_without_spending_attempts(db, make_tenant, owner_engine):
    tenant = await make_tenant()
    clock = ahead_clock()
    breakers = BreakerRegistry(clock, {"fakeprov": BreakerConfig(3, 30.0)})
    registry = JobRegistry()
    healthy = False

    async def call_provider(job: Job) -> None:
        if not healthy:
            raise ProviderServerError("down", provider="fakeprov", status_code=503)

    op = unique_op("breaker")
    registry.register(Operation(op, POLICIES["whatsapp_send"], "fakeprov"), call_provider)
    worker = make_worker(db, registry, clock, breakers)
    first = [await add_job(db, tenant.id, op, max_attempts=3) for _ in range(3)]
    await worker.run_once()  # three outages: the threshold
    assert breakers.get("fakeprov").state == "open"

    late = await add_job(db, tenant.id, op, max_attempts=3)
    clock.advance(3)  # the first three are due again (2 s * 1.3 at most)
    assert await worker.run_once() == 4
    for job_id in [*first, late]:
        row = await job_row(owner_engine, job_id)
        assert row.status == "pending"
        assert row.tentativas == (0 if job_id == late else 1)  # postponed, not burned
        # ...to the breaker's next probe (opened 3 s ago, 30 s reset)
        waited = (row.proxima_tentativa - clock.now()).total_seconds()
        assert abs(waited - 27) < 0.01

    healthy = True
    clock.advance(27)
    assert await worker.run_once() == 4  # one probe runs; the others wait for it
    assert breakers.get("fakeprov").state == "closed"
    clock.advance(10)
    await worker.run_once()
    states = {job_id: await job_row(owner_engine, job_id) for job_id in [*first, late]}
    assert {r.status for r in states.values()} == {"completed"}
    assert states[late].tentativas == 1
    assert {states[j].tentativas for j in first} == {2}


async def test_a_job_counts_once_against_its_breaker_and_may_take_the_probe(
    db, make_tenant, owner_engine
):
    tenant = await make_tenant()
    clock = ahead_clock()
    breakers = BreakerRegistry(clock, {"fakeprov": BreakerConfig(2, 30.0)})
    registry = JobRegistry()
    healthy = False

    async def guarded_client(job: Job) -> None:
        # A provider client shared with the RPC paths guards its own calls.
        async with breakers.guard("fakeprov"):
            if not healthy:
                raise ProviderServerError("down", provider="fakeprov", status_code=503)

    op = unique_op("guarded-once")
    registry.register(Operation(op, POLICIES["whatsapp_send"], "fakeprov"), guarded_client)
    worker = make_worker(db, registry, clock, breakers, concurrency=1)
    job_id = await add_job(db, tenant.id, op, max_attempts=3)
    await worker.run_once()
    assert breakers.get("fakeprov").snapshot().failures == 1  # one failed call, one count
    assert breakers.get("fakeprov").state == "closed"
    clock.advance(3)
    await worker.run_once()
    assert breakers.get("fakeprov").state == "open"

    healthy = True
    clock.advance(30)  # the probe is due: the job takes it, not refused by its own guard
    await worker.run_once()
    assert breakers.get("fakeprov").state == "closed"
    row = await job_row(owner_engine, job_id)
    assert (row.status, row.tentativas) == ("completed", 3)


async def test_circuit_open_raised_by_a_handler_postpones_too(db, make_tenant, owner_engine):
    tenant = await make_tenant()
    clock = ahead_clock()
    registry = JobRegistry()

    async def guarded(job: Job) -> None:
        raise CircuitOpen("provider paused", retry_after=12)

    op = unique_op("inner-breaker")
    registry.register(Operation(op, POLICIES["email_send"]), guarded)
    job_id = await add_job(db, tenant.id, op, max_attempts=3)
    await make_worker(db, registry, clock).run_once()
    row = await job_row(owner_engine, job_id)
    assert (row.status, row.tentativas) == ("pending", 0)
    assert abs((row.proxima_tentativa - clock.now()).total_seconds() - 12) < 0.01


async def test_heartbeat_extends_the_lease_of_a_long_job(db, make_tenant, owner_engine):
    tenant = await make_tenant()
    clock = ahead_clock()
    registry = JobRegistry()
    started, release = asyncio.Event(), asyncio.Event()

    async def long_job(job: Job) -> None:
        started.set()
        await release.wait()

    op = unique_op("long")
    registry.register(Operation(op, POLICIES["audience_sync"]), long_job)
    job_id = await add_job(db, tenant.id, op, max_attempts=3)
    worker = make_worker(db, registry, clock, lease_seconds=6)
    run = asyncio.create_task(worker.run_once())
    await asyncio.wait_for(started.wait(), 5)
    before = (await job_row(owner_engine, job_id)).lease_expires_at
    clock.advance(2.5)  # past lease/3: the heartbeat renews from the new now
    for _ in range(100):
        row = await job_row(owner_engine, job_id)
        if row.lease_expires_at > before:
            break
        await asyncio.sleep(0.02)
    assert (row.lease_expires_at - before).total_seconds() == pytest.approx(2.5, abs=0.01)
    assert row.lease_owner == worker.id
    release.set()
    await asyncio.wait_for(run, 5)
    assert (await job_row(owner_engine, job_id)).status == "completed"


async def test_stop_releases_a_running_job_without_spending_an_attempt(
    db, make_tenant, owner_engine
):
    tenant = await make_tenant()
    clock = ahead_clock()
    registry = JobRegistry()
    started = asyncio.Event()

    async def stuck(job: Job) -> None:
        started.set()
        await asyncio.sleep(3600)

    op = unique_op("stuck")
    registry.register(Operation(op, POLICIES["audience_sync"]), stuck)
    job_id = await add_job(db, tenant.id, op, max_attempts=3)
    worker = make_worker(db, registry, clock, poll_interval=0.05)
    await worker.start()
    await asyncio.wait_for(started.wait(), 5)
    await worker.stop(grace=0.1)
    row = await job_row(owner_engine, job_id)
    assert (row.status, row.tentativas, row.lease_owner) == ("pending", 0, None)


async def test_an_outcome_the_database_dropped_is_written_once_it_is_back(
    db, make_tenant, owner_engine, monkeypatch
):
    """The work is done when PostgreSQL restarts under the outcome's write: the worker waits
    the outage out and records it, instead of letting the lease expire and the work run again."""
    import asyncpg

    from server.resilience import queue

    tenant = await make_tenant()
    clock = ahead_clock()
    registry = JobRegistry()
    calls = []

    async def handler(job: Job) -> None:
        calls.append(job.attempt)

    real_complete = queue.complete
    failures = [asyncpg.exceptions.AdminShutdownError("terminating connection")]

    async def complete_after_a_restart(*args, **kwargs):  # type: ignore[no-untyped-def]
        if failures:
            raise failures.pop()
        return await real_complete(*args, **kwargs)

    monkeypatch.setattr(queue, "complete", complete_after_a_restart)
    op = unique_op("restart")
    registry.register(Operation(op, POLICIES["whatsapp_send"]), handler)
    job_id = await add_job(db, tenant.id, op, max_attempts=5)
    await make_worker(db, registry, clock).run_once()
    row = await job_row(owner_engine, job_id)
    assert (row.status, row.tentativas, calls, failures) == ("completed", 1, [1], [])


async def test_the_database_going_away_inside_a_job_dead_letters_it(db, make_tenant, owner_engine):
    """Not retried: the handler may have reached the provider before its own write failed,
    and WAHA or SMTP would get the work twice. The dead letter says why and can be replayed."""
    import asyncpg
    from sqlalchemy.exc import InterfaceError

    tenant = await make_tenant()
    clock = ahead_clock()
    registry = JobRegistry()

    async def handler(job: Job) -> None:
        raise InterfaceError("UPDATE", {}, asyncpg.InterfaceError("connection is closed"))

    op = unique_op("dbgone")
    registry.register(Operation(op, POLICIES["capi_event"]), handler)
    job_id = await add_job(db, tenant.id, op, max_attempts=5)
    await make_worker(db, registry, clock).run_once()
    row = await job_row(owner_engine, job_id)
    assert (row.status, row.tentativas) == ("failed", 1)
    assert "connection is closed" in row.ultimo_erro
