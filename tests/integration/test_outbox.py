"""The change feed's outbox against real PostgreSQL: numbering per tenant in commit order,
nothing recorded by a rolled-back change, retention and its clear error."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.uow import Database
from server.auth.caller import Caller, Role
from server.errors import InvalidArgument
from server.outbox import SequenceExpired, check_resumable, purge_outbox, read_after, record_change
from tests.conftest import MakeTenant


def service(tenant_id: object) -> Caller:
    return Caller(role=Role.SERVICE, tenant_id=tenant_id)  # type: ignore[arg-type]


async def test_sequences_are_per_tenant_and_replayable(
    db: Database, make_tenant: MakeTenant
) -> None:
    a, b = await make_tenant(), await make_tenant()
    for n in range(3):
        async with db.unit_of_work(service(a.id)) as session:
            change = await record_change(session, a.id, "CONTACT_CHANGED", {"n": n})
            assert change.sequence == n + 1
    async with db.unit_of_work(service(b.id)) as session:
        assert (await record_change(session, b.id, "ALERT", {"x": 1})).sequence == 1
    async with db.unit_of_work(service(a.id)) as session:
        assert await check_resumable(session, 1) == 3
        replay = await read_after(session, 1)
    assert [(e.sequence, e.kind, e.data) for e in replay] == [
        (2, "CONTACT_CHANGED", {"n": 1}),
        (3, "CONTACT_CHANGED", {"n": 2}),
    ]
    assert all(e.tenant_id == a.id for e in replay)


async def test_a_rolled_back_change_leaves_no_record_and_no_gap(
    db: Database, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    with pytest.raises(RuntimeError):
        async with db.unit_of_work(service(tenant.id)) as session:
            await record_change(session, tenant.id, "CONTACT_CHANGED", {"lost": True})
            raise RuntimeError("the change failed")
    async with db.unit_of_work(service(tenant.id)) as session:
        change = await record_change(session, tenant.id, "CONTACT_CHANGED", {"kept": True})
    assert change.sequence == 1
    async with db.unit_of_work(service(tenant.id)) as session:
        assert [e.data for e in await read_after(session, 0)] == [{"kept": True}]


async def test_concurrent_changes_take_numbers_in_commit_order(
    db: Database, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    first_recorded = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> int:
        async with db.unit_of_work(service(tenant.id)) as session:
            change = await record_change(session, tenant.id, "ALERT", {"who": "first"})
            first_recorded.set()
            await release_first.wait()
            return change.sequence

    async def second() -> int:
        await first_recorded.wait()
        async with db.unit_of_work(service(tenant.id)) as session:
            return (await record_change(session, tenant.id, "ALERT", {"who": "second"})).sequence

    one = asyncio.create_task(first())
    two = asyncio.create_task(second())
    await first_recorded.wait()
    # The second waits on the tenant's counter while the first is open.
    done, _ = await asyncio.wait({two}, timeout=0.3)
    assert not done
    release_first.set()
    assert (await one, await two) == (1, 2)


async def test_retention_removes_old_changes_and_refuses_resuming_before_them(
    db: Database, make_tenant: MakeTenant, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    for n in range(4):
        async with db.unit_of_work(service(tenant.id)) as session:
            await record_change(session, tenant.id, "ALERT", {"n": n})
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
        )
        await conn.execute(
            text(
                "UPDATE outbox_eventos SET criado_em = now() - interval '8 days'"
                " WHERE organizacao_id = :t AND sequencia <= 2"
            ),
            {"t": tenant.id},
        )
    assert await purge_outbox(db, dt.timedelta(days=7)) >= 2
    async with db.unit_of_work(service(tenant.id)) as session:
        with pytest.raises(SequenceExpired) as expired:
            await check_resumable(session, 1)
        assert expired.value.metadata["oldest_available"] == "3"
        assert await check_resumable(session, 2) == 4
        assert [e.sequence for e in await read_after(session, 2)] == [3, 4]
        with pytest.raises(InvalidArgument):
            await check_resumable(session, 5)
