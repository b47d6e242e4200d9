"""Shared fixtures. Database: one server per run, one fresh migrated database per session.

`pg` is the embedded server under .data/test-pg (or DATABASE_URL's server when set: that URL
is an owner URL); `database` is a uniquely named database migrated to head and dropped at
the end; `db` is the app-role Database the service would use. Concurrent test sessions share
the server and never each other's database.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.bootstrap import drop_database, prepare_database
from db.embedded import EmbeddedPostgres, start_embedded_at
from db.engine import make_engine, with_database
from db.uow import Database
from server.auth.caller import Caller, Role

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / ".data"


@dataclass(frozen=True)
class PgServer:
    """A PostgreSQL server the tests may create databases on, as its owner."""

    owner_url: str
    embedded: EmbeddedPostgres | None = None

    def url_for(self, database: str) -> str:
        return with_database(self.owner_url, database)


@dataclass(frozen=True)
class MigratedDatabase:
    name: str
    owner_url: str
    app_url: str


@dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    admin_id: uuid.UUID
    members: tuple[uuid.UUID, ...] = field(default_factory=tuple)

    @property
    def member_id(self) -> uuid.UUID:
        return self.members[0]


MakeTenant = Callable[..., Awaitable[Tenant]]
MakeCaller = Callable[..., Caller]


def unique_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
async def pg() -> AsyncIterator[PgServer]:
    external = os.environ.get("DATABASE_URL")
    if external:
        yield PgServer(owner_url=external)
        return
    handle = await asyncio.to_thread(start_embedded_at, TEST_DATA / "test-pg")
    try:
        yield PgServer(owner_url=handle.owner_url, embedded=handle)
    finally:
        await asyncio.to_thread(handle.stop)


@pytest.fixture(scope="session")
async def database(pg: PgServer) -> AsyncIterator[MigratedDatabase]:
    name = unique_name("conexoes_test")
    owner_url = pg.url_for(name)
    app_url = await prepare_database(owner_url, data_dir=TEST_DATA / "test-secrets")
    try:
        yield MigratedDatabase(name=name, owner_url=owner_url, app_url=app_url)
    finally:
        await drop_database(owner_url)


@pytest.fixture(scope="session")
async def owner_engine(database: MigratedDatabase) -> AsyncIterator[AsyncEngine]:
    """The migration owner's engine, for arranging state the app role may not touch."""
    engine = make_engine(database.owner_url, pool_size=2, max_overflow=2)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
async def db(database: MigratedDatabase) -> AsyncIterator[Database]:
    database_ = Database(database.app_url, pool_size=5, max_overflow=5)
    try:
        yield database_
    finally:
        await database_.dispose()


@pytest.fixture
def make_tenant(owner_engine: AsyncEngine) -> MakeTenant:
    """`await make_tenant(members=1)`: a new organization with one admin and `members` members."""

    async def make(*, members: int = 1, name: str | None = None) -> Tenant:
        org = uuid.uuid4()
        admin = uuid.uuid4()
        member_ids = tuple(uuid.uuid4() for _ in range(members))
        users = [(admin, "admin")] + [(m, "member") for m in member_ids]
        async with owner_engine.begin() as conn:
            # Also works for a non-superuser owner, which RLS (forced) binds like anyone.
            await conn.execute(
                text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(org)}
            )
            await conn.execute(
                text("INSERT INTO organizacoes_saas (id, nome) VALUES (:id, :nome)"),
                {"id": org, "nome": name or f"Org {org.hex[:8]}"},
            )
            for user_id, role in users:
                await conn.execute(
                    text(
                        "INSERT INTO usuarios (id, organizacao_id, nome, email, role) "
                        "VALUES (:id, :org, :nome, :email, :role)"
                    ),
                    {
                        "id": user_id,
                        "org": org,
                        "nome": f"{role} {user_id.hex[:6]}",
                        "email": f"{user_id.hex[:8]}@example.com",
                        "role": role,
                    },
                )
        return Tenant(id=org, admin_id=admin, members=member_ids)

    return make


@pytest.fixture
def make_caller() -> MakeCaller:
    """`make_caller(tenant, role=Role.MEMBER, user=None)`: the verified identity of a request.

    The user defaults to the tenant's admin (admin role) or first member (member role);
    super_admin and service callers have no user unless one is given.
    """

    def make(
        tenant: Tenant | None,
        role: Role = Role.MEMBER,
        user: uuid.UUID | None = None,
        grants: frozenset[str] = frozenset(),
    ) -> Caller:
        if user is None and tenant is not None:
            if role is Role.ADMIN:
                user = tenant.admin_id
            elif role is Role.MEMBER:
                user = tenant.member_id
        return Caller(
            role=role,
            tenant_id=tenant.id if tenant is not None else None,
            user_id=user,
            grants=grants,
        )

    return make


@pytest.fixture(scope="session")
async def server(database: MigratedDatabase, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The real gRPC server (interceptors, services, bus) on a loopback port, for the session."""
    from tests.support.grpc_server import running_server, test_settings

    settings = test_settings(database.owner_url, str(tmp_path_factory.mktemp("server-data")))
    async with running_server(settings) as running:
        yield running
