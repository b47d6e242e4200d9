"""Tenant isolation against real PostgreSQL, as the application role the service uses."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import GLOBAL_TABLES, PERSONAL_TABLES, TENANT_TABLES, Alert, Contact, metadata
from db.uow import Database
from server.auth.caller import Role
from tests.conftest import MakeCaller, MakeTenant, Tenant

# Values a CHECK constrains, where its first allowed value would not do.
FIXED_VALUES: dict[tuple[str, str], Any] = {
    ("conversas", "direcao"): "outbound",  # inbound Instagram rows touch contatos
}
DEFINER_FUNCTIONS = {
    "app_resolve_whatsapp_session",
    "app_resolve_meta_page",
    "app_resolve_instagram_account",
    "app_resolve_google_channel",
    "app_claim_jobs",
    "app_list_tenants",
    "app_ensure_identity",
    "app_purge_outbox",
    "app_purge_webhook_inbox",
    "app_complete_job",
    "app_retry_job",
    "app_postpone_job",
    "app_renew_job_leases",
}
TENANT_ORDER = [t.name for t in metadata.sorted_tables if t.name in TENANT_TABLES]
# Histories the service only appends to (no UPDATE or DELETE granted).
APPEND_ONLY = {"audit_log", "conexoes_status_historico", "tokens_renovacoes"}


def _allowed(table: sa.Table, column: str) -> str | None:
    """The first value a `column IN ('a', ...)` CHECK allows (see db.models.base.in_check)."""
    for constraint in table.constraints:
        if isinstance(constraint, sa.CheckConstraint):
            found = re.match(rf"{column} IN \('([^']*)'", str(constraint.sqltext))
            if found:
                return found.group(1)
    return None


def _value(table: sa.Table, column: sa.Column[Any]) -> Any:
    if (table.name, column.name) in FIXED_VALUES:
        return FIXED_VALUES[(table.name, column.name)]
    allowed = _allowed(table, column.name)
    if allowed is not None:
        return allowed
    kind = column.type
    tag = uuid.uuid4().hex[:12]
    if isinstance(kind, sa.Uuid):
        return uuid.uuid4()
    if isinstance(kind, sa.DateTime):
        return dt.datetime.now(dt.UTC)
    if isinstance(kind, sa.Boolean):
        return False
    if isinstance(kind, sa.Integer):
        return 0
    if isinstance(kind, sa.Numeric):
        return Decimal("1")
    if isinstance(kind, sa.LargeBinary):
        return b"x"
    if isinstance(kind, sa.ARRAY):
        return []
    if isinstance(kind, sa.JSON):
        return {}
    if isinstance(kind, sa.String):
        return f"x-{tag}"[: kind.length or 64]
    raise AssertionError(f"no sample value for {table.name}.{column.name}: {kind!r}")


def sample_row(
    table: sa.Table, org: uuid.UUID, parents: dict[str, uuid.UUID], user: uuid.UUID
) -> dict[str, Any]:
    """A valid row: required columns filled, foreign keys pointing at `parents`."""
    row: dict[str, Any] = {"id": uuid.uuid4(), "organizacao_id": org}
    for column in table.columns:
        if column.name in row:
            continue
        fks = list(column.foreign_keys)
        if fks:
            target = fks[0].column.table.name
            if target == "usuarios":
                row[column.name] = user
            elif target in parents:
                row[column.name] = parents[target]
            continue
        if column.nullable or column.server_default is not None:
            continue
        row[column.name] = _value(table, column)
    return row


async def seed(
    engine: AsyncEngine, tenant: Tenant, user: uuid.UUID | None = None
) -> dict[str, Any]:
    """One row in every tenant table for `tenant`, inserted by the owner. Returns table -> id."""
    user = user or tenant.admin_id
    parents: dict[str, uuid.UUID] = {"organizacoes_saas": tenant.id}
    async with engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
        )
        for name in TENANT_ORDER:
            table = metadata.tables[name]
            if name == "usuarios":
                parents[name] = tenant.admin_id
                continue
            row = sample_row(table, tenant.id, parents, user)
            await conn.execute(table.insert().values(**row))
            parents[name] = row["id"]
    return parents


@pytest.fixture
async def two_tenants(
    make_tenant: MakeTenant, owner_engine: AsyncEngine
) -> tuple[Tenant, dict[str, Any], Tenant, dict[str, Any]]:
    a, b = await make_tenant(), await make_tenant()
    return a, await seed(owner_engine, a), b, await seed(owner_engine, b)


async def test_every_tenant_table_has_rls_enabled_and_forced(owner_engine: AsyncEngine) -> None:
    async with owner_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,"
                    " (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid"
                    "   AND p.polname = 'tenant_isolation')"
                    " FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace"
                    " AND c.relkind = 'r'"
                )
            )
        ).all()
    state = {r[0]: (r[1], r[2], r[3]) for r in rows}
    assert TENANT_TABLES, "the models name no tenant table"
    for table in sorted(TENANT_TABLES | {"organizacoes_saas"}):
        assert state[table] == (True, True, 1), f"{table}: RLS enabled/forced/policy"
    for table in GLOBAL_TABLES:
        assert state[table][:2] == (False, False), table


async def test_every_table_in_the_live_schema_is_audited(owner_engine: AsyncEngine) -> None:
    """The per-table isolation checks below run over the models' tenant tables; a table a
    migration made without a model, or a model's tenant column missing, would escape them."""
    async with owner_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT c.table_name, bool_or(c.column_name = 'organizacao_id')"
                    " FROM information_schema.columns c JOIN information_schema.tables t"
                    "  USING (table_schema, table_name)"
                    " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'"
                    "  AND c.table_name <> 'alembic_version' GROUP BY 1"
                )
            )
        ).all()
    live_tenant = {name for name, tenant in rows if tenant}
    live = {name for name, _ in rows}
    assert live_tenant == set(TENANT_TABLES)
    assert live == set(TENANT_TABLES) | set(GLOBAL_TABLES) | {"organizacoes_saas"}


async def test_app_role_owns_nothing_and_cannot_bypass(db: Database) -> None:
    async with db.system() as session:
        role = (
            await session.execute(
                text(
                    "SELECT current_user, r.rolsuper, r.rolbypassrls, r.rolcreaterole,"
                    " (SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid)"
                    " + (SELECT count(*) FROM pg_proc p WHERE p.proowner = r.oid)"
                    " FROM pg_roles r WHERE r.rolname = current_user"
                )
            )
        ).one()
        definer_funcs = (
            await session.execute(
                text(
                    "SELECT p.proname, p.prosecdef, pg_get_userbyid(p.proowner), p.proconfig"
                    " FROM pg_proc p WHERE p.proname LIKE 'app\\_%'"
                )
            )
        ).all()
    assert tuple(role) == ("conexoes_app", False, False, False, 0)
    assert {name for name, *_ in definer_funcs} >= DEFINER_FUNCTIONS
    for name, secdef, owner, config in definer_funcs:
        assert secdef and owner == "conexoes_definer", name
        # The search path pinned first; beyond it only planner switches (the claim's plan).
        assert config[0] == "search_path=public, pg_temp", name
        assert all(c.startswith("enable_") for c in config[1:]), name


async def test_as_caller_functions_run_with_the_callers_rights(db: Database) -> None:
    """The one-round-trip calls (migrations 0025, 0026) set the caller's settings and work
    under RLS: never SECURITY DEFINER, not owned by the app role, executable by it."""
    async with db.system() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT p.proname, p.prosecdef, pg_get_userbyid(p.proowner),"
                    " has_function_privilege('conexoes_app', p.oid, 'EXECUTE')"
                    " FROM pg_proc p WHERE p.proname LIKE 'as\\_caller\\_%'"
                )
            )
        ).all()
    assert {name for name, *_ in rows} == {
        "as_caller_whatsapp_status",
        "as_caller_member_grants",
        "as_caller_accept_webhook",
        "as_caller_whatsapp_inbox",
        "as_caller_whatsapp_store_message",
    }
    for name, secdef, owner, executable in rows:
        assert not secdef and owner not in ("conexoes_app", "conexoes_definer"), name
        assert executable, name


async def test_no_tenant_set_reads_nothing_and_does_not_error(
    db: Database, two_tenants: Any
) -> None:
    async with db.system() as session:
        for table in sorted(TENANT_TABLES | {"organizacoes_saas"}):
            count = (await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar()
            assert count == 0, table
    # A connection on which nothing was ever set: current_setting(..., true) is NULL.
    async with db.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM contatos"))).scalar() == 0


@pytest.mark.parametrize("table", TENANT_ORDER)
async def test_tenant_cannot_reach_another_tenants_rows(
    table: str,
    db: Database,
    owner_engine: AsyncEngine,
    make_caller: MakeCaller,
    two_tenants: tuple[Tenant, dict[str, Any], Tenant, dict[str, Any]],
) -> None:
    a, a_rows, b, b_rows = two_tenants
    caller = make_caller(a, role=Role.ADMIN)
    b_id = b_rows.get(table, b.admin_id)
    a_id = a_rows.get(table, a.admin_id)

    async with db.unit_of_work(caller) as tx:
        orgs = (await tx.execute(text(f"SELECT DISTINCT organizacao_id FROM {table}"))).scalars()
        assert set(orgs) == {a.id}
        found = await tx.execute(text(f"SELECT 1 FROM {table} WHERE id = :id"), {"id": b_id})
        assert found.first() is None

    if table not in APPEND_ONLY:
        async with db.unit_of_work(caller) as tx:
            for sql in (
                f"UPDATE {table} SET organizacao_id = :org WHERE id = :id",
                f"DELETE FROM {table} WHERE id = :id",
            ):
                result = await tx.execute(text(sql), {"id": b_id, "org": a.id})
                assert result.rowcount == 0, sql  # type: ignore[attr-defined]
        # Moving one's own row into another tenant fails the WITH CHECK.
        with pytest.raises(ProgrammingError, match="row-level security"):
            async with db.unit_of_work(caller) as tx:
                await tx.execute(
                    text(f"UPDATE {table} SET organizacao_id = :org WHERE id = :id"),
                    {"id": a_id, "org": b.id},
                )
    else:
        with pytest.raises(ProgrammingError, match="permission denied"):
            async with db.unit_of_work(caller) as tx:
                await tx.execute(text(f"DELETE FROM {table} WHERE id = :id"), {"id": a_id})

    parents = {**b_rows, "organizacoes_saas": b.id}
    row = sample_row(metadata.tables[table], b.id, parents, b.admin_id)
    with pytest.raises(ProgrammingError, match="row-level security"):
        async with db.unit_of_work(caller) as tx:
            await tx.execute(metadata.tables[table].insert().values(**row))

    async with owner_engine.connect() as conn:
        still = await conn.execute(
            text(f"SELECT organizacao_id FROM {table} WHERE id = :id"), {"id": b_id}
        )
        assert still.scalar() == b.id


@pytest.mark.parametrize("table", sorted(PERSONAL_TABLES))
async def test_member_sees_only_own_connection_admin_sees_all(
    table: str,
    db: Database,
    owner_engine: AsyncEngine,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
) -> None:
    tenant = await make_tenant(members=2)
    mine, theirs = tenant.members
    rows = {}
    for user in (mine, theirs):
        row = sample_row(metadata.tables[table], tenant.id, {}, user)
        async with owner_engine.begin() as conn:
            await conn.execute(metadata.tables[table].insert().values(**row))
        rows[user] = row["id"]

    member = make_caller(tenant, role=Role.MEMBER, user=mine)
    async with db.unit_of_work(member) as tx:
        visible = set((await tx.execute(text(f"SELECT id FROM {table}"))).scalars())
        assert visible == {rows[mine]}
        changed = await tx.execute(
            text(f"UPDATE {table} SET atualizado_em = now() WHERE id = :id"), {"id": rows[theirs]}
        )
        assert changed.rowcount == 0  # type: ignore[attr-defined]
    with pytest.raises(ProgrammingError, match="row-level security"):
        async with db.unit_of_work(member) as tx:
            await tx.execute(
                text(f"UPDATE {table} SET usuario_id = :other WHERE id = :id"),
                {"other": theirs, "id": rows[mine]},
            )

    for role in (Role.ADMIN, Role.SUPER_ADMIN):
        async with db.unit_of_work(make_caller(tenant, role=role)) as tx:
            visible = set((await tx.execute(text(f"SELECT id FROM {table}"))).scalars())
            assert visible == set(rows.values()), role


async def test_platform_audit_rows_only_for_super_admin(
    db: Database, owner_engine: AsyncEngine, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant()
    platform_id, tenant_id = uuid.uuid4(), uuid.uuid4()
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO audit_log (id, organizacao_id, actor_role, action) VALUES"
                " (:p, NULL, 'super_admin', 'platform_credentials.update'),"
                " (:t, :org, 'admin', 'whatsapp.connect')"
            ),
            {"p": platform_id, "t": tenant_id, "org": tenant.id},
        )

    async def visible(role: Role, with_tenant: bool = True) -> set[uuid.UUID]:
        caller = make_caller(tenant if with_tenant else None, role=role)
        async with db.unit_of_work(caller) as tx:
            ids = await tx.execute(
                text("SELECT id FROM audit_log WHERE id IN (:p, :t)"),
                {"p": platform_id, "t": tenant_id},
            )
            return set(ids.scalars())

    assert await visible(Role.SUPER_ADMIN) == {platform_id, tenant_id}
    assert await visible(Role.SUPER_ADMIN, with_tenant=False) == {platform_id}
    assert await visible(Role.ADMIN) == {tenant_id}
    assert await visible(Role.MEMBER) == {tenant_id}
    assert await visible(Role.SERVICE) == {tenant_id}

    # Workers may record platform-level alerts, but not read them back.
    async with db.unit_of_work(make_caller(None, role=Role.SERVICE)) as tx:
        await tx.execute(
            text(
                "INSERT INTO alerts (organizacao_id, audience, kind, message)"
                " VALUES (NULL, 'super_admin', 'circuit_open', 'waha breaker opened')"
            )
        )
        assert (await tx.execute(text("SELECT count(*) FROM alerts"))).scalar() == 0
    with pytest.raises(ProgrammingError, match="row-level security"):
        async with db.unit_of_work(make_caller(tenant, role=Role.ADMIN)) as tx:
            await tx.execute(
                text(
                    "INSERT INTO alerts (organizacao_id, audience, kind, message)"
                    " VALUES (NULL, 'super_admin', 'x', 'forged platform alert')"
                )
            )


async def _enqueue(engine: AsyncEngine, tenant: Tenant, n: int, **cols: Any) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    async with engine.begin() as conn:
        await conn.execute(
            metadata.tables["eventos_pendentes"].insert(),
            [
                {
                    "id": i,
                    "organizacao_id": tenant.id,
                    "tipo": "capi_event",
                    "operacao": cols.get("operacao", "test.op"),
                    "destino": "meta",
                    "payload": {},
                    **{k: v for k, v in cols.items() if k != "operacao"},
                }
                for i in ids
            ],
        )
    return ids


async def _claim(
    db: Database,
    worker: str,
    limit: int,
    lease: int,
    ops: list[str] | None = None,
    hold: float = 0.0,
) -> list[uuid.UUID]:
    async with db.system() as session:
        rows = await session.execute(
            text("SELECT id FROM app_claim_jobs(:w, :n, :l, :ops)"),
            {"w": worker, "n": limit, "l": lease, "ops": ops},
        )
        ids = list(rows.scalars())
        await asyncio.sleep(hold)  # keep the row locks while the others claim
        return ids


async def test_claim_jobs_never_hands_a_job_to_two_claimers(
    db: Database, owner_engine: AsyncEngine, make_tenant: MakeTenant
) -> None:
    a, b = await make_tenant(), await make_tenant()
    op_name = f"op.{uuid.uuid4().hex[:8]}"
    jobs = set(await _enqueue(owner_engine, a, 15, operacao=op_name))
    jobs |= set(await _enqueue(owner_engine, b, 15, operacao=op_name))
    later = await _enqueue(
        owner_engine,
        a,
        3,
        operacao=op_name,
        proxima_tentativa=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )

    claimed: list[uuid.UUID] = []
    for _ in range(4):
        rounds = await asyncio.gather(
            *(_claim(db, f"w{i}", 4, 60, [op_name], hold=0.05) for i in range(6))
        )
        claimed += [job for batch in rounds for job in batch]
    assert len(claimed) == len(set(claimed)), "a job was handed out twice"
    assert set(claimed) == jobs
    assert not set(later) & set(claimed)
    async with owner_engine.connect() as conn:
        states = await conn.execute(
            text(
                "SELECT DISTINCT status, lease_owner IS NOT NULL FROM eventos_pendentes"
                " WHERE id = ANY(:ids)"
            ),
            {"ids": list(jobs)},
        )
        assert states.all() == [("processing", True)]


async def test_claim_jobs_rehands_a_job_whose_lease_expired(
    db: Database, owner_engine: AsyncEngine, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    op_name = f"op.{uuid.uuid4().hex[:8]}"
    (job,) = await _enqueue(owner_engine, tenant, 1, operacao=op_name)
    assert await _claim(db, "alive", 10, 60, [op_name]) == [job]
    assert await _claim(db, "other", 10, 60, [op_name]) == []  # leased
    async with owner_engine.begin() as conn:  # the worker died: its lease ran out
        await conn.execute(
            text(
                "UPDATE eventos_pendentes SET lease_expires_at = now() - interval '1 second'"
                " WHERE id = :id"
            ),
            {"id": job},
        )
    assert await _claim(db, "rescuer", 10, 60, [op_name]) == [job]
    async with owner_engine.connect() as conn:
        owner = await conn.execute(
            text("SELECT lease_owner FROM eventos_pendentes WHERE id = :id"), {"id": job}
        )
        assert owner.scalar() == "rescuer"


async def test_resolvers_find_the_tenant_from_our_records(
    db: Database, owner_engine: AsyncEngine, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    session_name, channel, ig, page = (f"s-{uuid.uuid4().hex}" for _ in range(4))
    rows = await seed(owner_engine, tenant, user=tenant.member_id)
    async with owner_engine.begin() as conn:
        for sql, value in (
            ("UPDATE sessoes_whatsapp SET session_name = :v WHERE id = :id", session_name),
            ("UPDATE conexoes_google SET channel_id = :v WHERE id = :id", channel),
            ("UPDATE conexoes_instagram SET instagram_user_id = :v WHERE id = :id", ig),
            ("UPDATE paginas_meta SET page_id = :v WHERE id = :id", page),
        ):
            table = sql.split()[1]
            await conn.execute(text(sql), {"v": value, "id": rows[table]})

    async with db.system() as s:

        def call(sql: str, value: str) -> Any:
            return s.execute(text(sql), {"v": value})

        wa = (await call("SELECT * FROM app_resolve_whatsapp_session(:v)", session_name)).all()
        gc = (await call("SELECT * FROM app_resolve_google_channel(:v)", channel)).all()
        ia = (await call("SELECT * FROM app_resolve_instagram_account(:v)", ig)).all()
        mp = (await call("SELECT * FROM app_resolve_meta_page(:v)", page)).all()
        none = (await call("SELECT * FROM app_resolve_meta_page(:v)", "unknown")).all()
        tenants = set((await s.execute(text("SELECT * FROM app_list_tenants()"))).scalars())
    assert wa == [(tenant.id, tenant.member_id, rows["sessoes_whatsapp"])]
    assert gc == [(tenant.id, tenant.member_id, rows["conexoes_google"])]
    assert ia == [(tenant.id, rows["conexoes_instagram"])]
    assert mp == [(tenant.id, rows["paginas_meta"])]
    assert none == []
    assert tenant.id in tenants


async def test_ensure_identity_creates_org_and_user_once(
    db: Database, make_caller: MakeCaller
) -> None:
    org, user = uuid.uuid4(), uuid.uuid4()
    caller = make_caller(Tenant(id=org, admin_id=user), role=Role.ADMIN)
    await db.ensure_identity(caller)
    await db.ensure_identity(caller)
    async with db.unit_of_work(caller) as tx:
        assert (await tx.execute(text("SELECT id FROM organizacoes_saas"))).scalars().all() == [org]
        users = (await tx.execute(text("SELECT id, role FROM usuarios"))).all()
    assert users == [(user, "admin")]


async def test_direct_function_grants_stay_narrow(db: Database) -> None:
    with pytest.raises(DBAPIError, match="permission denied"):
        async with db.system() as s:
            await s.execute(text("SELECT count(*) FROM alembic_version"))


async def test_orm_writes_through_the_unit_of_work(
    db: Database, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant()
    member = make_caller(tenant, role=Role.MEMBER)
    async with db.unit_of_work(member) as tx:
        tx.add(Contact(organizacao_id=tenant.id, nome="Ana", telefone="+5511999990000"))
    with pytest.raises(RuntimeError):
        async with db.unit_of_work(member) as tx:
            tx.add(Contact(organizacao_id=tenant.id, nome="Bruno"))
            await tx.flush()
            raise RuntimeError("the handler failed")
    async with db.unit_of_work(member) as tx:
        names = (await tx.execute(sa.select(Contact.nome))).scalars().all()
    assert names == ["Ana"]

    # A worker records a platform-level alert through the ORM without reading it back.
    async with db.unit_of_work(make_caller(None, role=Role.SERVICE)) as tx:
        tx.add(Alert(audience="super_admin", kind="circuit_open", message="meta_capi open"))
    async with db.unit_of_work(make_caller(None, role=Role.SUPER_ADMIN)) as tx:
        kinds = (await tx.execute(sa.select(Alert.message))).scalars().all()
    assert "meta_capi open" in kinds


async def test_settings_do_not_outlive_the_transaction(
    database: Any, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    single = Database(database.app_url, pool_size=1, max_overflow=0)
    try:
        tenant = await make_tenant()
        async with single.unit_of_work(make_caller(tenant, role=Role.ADMIN)) as tx:
            assert (await tx.execute(text("SELECT count(*) FROM usuarios"))).scalar() == 2
        async with single.engine.connect() as conn:  # the same pooled connection
            leftover = await conn.execute(
                text(
                    "SELECT current_setting('app.current_tenant', true),"
                    " current_setting('app.current_role', true)"
                )
            )
            assert set(leftover.one()) <= {None, ""}
    finally:
        await single.dispose()


async def test_integracao_health_reports_only_the_callers_tenant(
    db: Database, owner_engine: AsyncEngine, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    a, b = await make_tenant(), await make_tenant()
    await _enqueue(owner_engine, a, 2)
    await _enqueue(owner_engine, b, 3, status="failed")
    async with db.unit_of_work(make_caller(a, role=Role.ADMIN)) as tx:
        rows = (
            await tx.execute(text("SELECT organizacao_id, pendentes FROM integracao_health"))
        ).all()
    assert rows == [(a.id, 2)]
