"""The one-round-trip begin and the plain unit of work keep the unit of work's guarantees:
the caller's settings for exactly one transaction, commit on a clean exit, rollback on an
error, and row-level security as with the ORM session."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from db.uow import Database
from server.auth.caller import Role
from tests.conftest import MakeCaller, MakeTenant

SETTINGS = (
    "SELECT current_setting('app.current_tenant', true), current_setting('app.current_user', true),"
    " current_setting('app.current_role', true)"
)


async def test_settings_hold_for_the_transaction_and_vanish_after_it(
    db: Database, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant()
    caller = make_caller(tenant, Role.MEMBER)
    async with db.unit_of_work(caller) as tx:
        assert tuple((await tx.execute(text(SETTINGS))).one()) == (
            str(tenant.id),
            str(tenant.member_id),
            "member",
        )
    async with db.plain_unit_of_work(caller) as pg:
        assert tuple(await pg.fetchrow(SETTINGS)) == (
            str(tenant.id),
            str(tenant.member_id),
            "member",
        )
        # A pooled connection carries nothing of the caller outside its transaction.
    async with db.engine.connect() as conn:
        row = (await conn.execute(text(SETTINGS))).one()
        assert str(tenant.id) not in tuple(row)


async def test_plain_unit_of_work_commits_rolls_back_and_isolates(
    db: Database, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    mine, other = await make_tenant(), await make_tenant()
    caller = make_caller(mine, Role.ADMIN)
    insert = "INSERT INTO contatos (id, organizacao_id, nome) VALUES ($1, $2, $3)"
    kept, dropped = uuid.uuid4(), uuid.uuid4()
    async with db.plain_unit_of_work(caller) as pg:
        await pg.execute(insert, kept, mine.id, "kept")
    with pytest.raises(RuntimeError):
        async with db.plain_unit_of_work(caller) as pg:
            await pg.execute(insert, dropped, mine.id, "dropped")
            raise RuntimeError("the use case failed")
    async with db.plain_unit_of_work(caller) as pg:
        names = {r["nome"] for r in await pg.fetch("SELECT nome FROM contatos")}
    assert names == {"kept"}
    # Another tenant's caller sees none of it, and cannot write into this tenant.
    async with db.plain_unit_of_work(make_caller(other, Role.ADMIN)) as pg:
        assert await pg.fetchval("SELECT count(*) FROM contatos WHERE id = $1", kept) == 0
    with pytest.raises(Exception, match="row-level security"):
        async with db.plain_unit_of_work(make_caller(other, Role.ADMIN)) as pg:
            await pg.execute(insert, uuid.uuid4(), mine.id, "intruder")


async def test_a_setting_cannot_break_out_of_its_literal() -> None:
    from db.begin import begin_statement

    sql = begin_statement({"tenant": "x'); DROP TABLE t; --", "user": "", "role": "member"})
    assert "'x''); DROP TABLE t; --'" in sql
