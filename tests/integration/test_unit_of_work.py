"""The one-round-trip begin and the plain unit of work keep the unit of work's guarantees:
the caller's settings for exactly one transaction, commit on a clean exit, rollback on an
error, and row-level security as with the ORM session."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from db.uow import Database
from server.auth.caller import Caller, Role
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


async def _add_session(db: Database, caller: Caller, owner: uuid.UUID) -> uuid.UUID:
    session_id = uuid.uuid4()
    async with db.plain_unit_of_work(caller) as pg:
        await pg.execute(
            "INSERT INTO sessoes_whatsapp (id, organizacao_id, usuario_id, session_name, status)"
            " VALUES ($1, $2, $3, $4, 'connected')",
            session_id,
            caller.tenant_id,
            owner,
            f"wpp-{session_id.hex[:8]}",
        )
    return session_id


async def test_a_read_in_one_round_trip_runs_as_the_caller_under_rls(
    db: Database, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    mine, other = await make_tenant(members=2), await make_tenant()
    admin = make_caller(mine, Role.ADMIN)
    first, second = mine.members
    session_id = await _add_session(db, admin, first)
    status = "SELECT sessao, owner_name FROM as_caller_whatsapp_status($1, $2, $3, $4)"
    member = make_caller(mine, Role.MEMBER, user=first)
    found = await db.fetchrow_as(member, status, first)
    assert found is not None
    assert found["sessao"]["id"] == session_id
    assert found["sessao"]["status"] == "connected"
    assert found["owner_name"] == f"member {first.hex[:6]}"
    # Row-level security holds inside the function: another member of the tenant does not see
    # the session (user_own_connection), nor does another tenant's admin.
    assert await db.fetchrow_as(make_caller(mine, Role.MEMBER, user=second), status, first) is None
    assert await db.fetchrow_as(make_caller(other, Role.ADMIN), status, first) is None
    # The admin of the tenant sees it.
    assert await db.fetchrow_as(admin, status, first) is not None
    # The call was its own transaction: the pooled connections carry none of its settings.
    for _ in range(5):
        async with db.engine.connect() as conn:
            assert not (await conn.get_raw_connection()).driver_connection.is_in_transaction()
            row = (await conn.execute(text(SETTINGS))).one()
            assert str(mine.id) not in tuple(row)


async def test_member_grants_are_read_under_the_callers_tenant(
    db: Database, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    mine, other = await make_tenant(), await make_tenant()
    admin = make_caller(mine, Role.ADMIN)
    async with db.plain_unit_of_work(admin) as pg:
        await pg.execute(
            "UPDATE usuarios SET permissoes_conexoes = '{\"meta_lead_ads\": true}' WHERE id = $1",
            mine.member_id,
        )
    grants = "SELECT as_caller_member_grants($1, $2, $3) AS granted"
    found = await db.fetchrow_as(make_caller(mine, Role.MEMBER), grants)
    assert found is not None and found["granted"] == {"meta_lead_ads": True}
    # The same user id under another tenant's settings reads nothing.
    stranger = make_caller(other, Role.MEMBER, user=mine.member_id)
    found = await db.fetchrow_as(stranger, grants)
    assert found is not None and found["granted"] is None
