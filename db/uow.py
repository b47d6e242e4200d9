"""The unit of work: one transaction, run as one verified caller, under row-level security."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.begin import begin_statement, begin_with_settings
from db.engine import APPLICATION_NAME, asyncpg_dsn, make_engine


class Identity(Protocol):
    """Who a unit of work runs as (the server's verified caller): db/ needs only these."""

    @property
    def tenant_id(self) -> uuid.UUID | None: ...
    @property
    def user_id(self) -> uuid.UUID | None: ...
    @property
    def role(self) -> str: ...


# Transaction-local (is_local = true): the settings vanish at COMMIT/ROLLBACK, so a pooled
# connection never carries one caller's tenant into the next transaction.
SET_CONTEXT = text(
    "SELECT set_config('app.current_tenant', :tenant, true),"
    " set_config('app.current_user', :user, true),"
    " set_config('app.current_role', :role, true)"
)


def caller_settings(caller: Identity | None) -> dict[str, str]:
    """The three RLS settings for a caller; empty strings where there is nothing to set."""
    if caller is None:
        return {"tenant": "", "user": "", "role": ""}
    return {
        "tenant": str(caller.tenant_id) if caller.tenant_id else "",
        "user": str(caller.user_id) if caller.user_id else "",
        "role": str(caller.role),
    }


async def act_as(session: AsyncSession, caller: Identity) -> None:
    """Switches the RLS settings of `session`'s open transaction to `caller` (still
    transaction-local): one transaction may resolve as the service, then write as a tenant.
    """
    await session.execute(SET_CONTEXT, caller_settings(caller))


async def _set_context(session: AsyncSession, settings: dict[str, str]) -> None:
    # One round trip for BEGIN and the settings where the driver allows it (db/begin.py).
    if not await begin_with_settings(await session.connection(), settings):
        await session.execute(SET_CONTEXT, settings)


# Connections that hold session locks (request id slots of running RPCs); more callers wait.
LOCK_POOL_SIZE = 20


class Database:
    """The application's database: the app-role engine, its sessions and raw connections."""

    def __init__(self, url: str, *, engine: AsyncEngine | None = None, **engine_kw: Any) -> None:
        """Args:
        url: the app role's URL (what db.bootstrap.prepare_database returns).
        engine: an engine to use instead of creating one from `url`.
        engine_kw: passed to db.engine.make_engine (pool_size, max_overflow, ...).
        """
        self.url = url
        self._engine = engine if engine is not None else make_engine(url, **engine_kw)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        self._locks: asyncpg.Pool | None = None
        self._locks_made = asyncio.Lock()

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @asynccontextmanager
    async def unit_of_work(self, caller: Identity) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction, with the caller's tenant, user and role set.

        Commits when the block exits cleanly, rolls back when it raises. The settings come
        from the authenticated caller only, never from request fields.
        """
        async with self._sessions() as session, session.begin():
            await _set_context(session, caller_settings(caller))
            yield session

    @asynccontextmanager
    async def plain_unit_of_work(self, caller: Identity) -> AsyncIterator[asyncpg.Connection]:
        """The same transaction as `unit_of_work` (caller's settings, commit on a clean exit,
        rollback on an error) on the pooled asyncpg connection itself, without an ORM
        session: for hot paths of a statement or two, where the session's own work per call
        costs more than the statements (plain SQL, asyncpg's prepared-statement cache).
        """
        async with self._engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: asyncpg.Connection = raw.driver_connection
            await driver.execute(begin_statement(caller_settings(caller)))
            try:
                yield driver
            except BaseException:
                try:
                    await driver.execute("ROLLBACK")
                except Exception:
                    # Closed, or left mid-statement by a cancellation: never pool it again.
                    await connection.invalidate()
                raise
            await driver.execute("COMMIT")

    @asynccontextmanager
    async def system(self) -> AsyncIterator[AsyncSession]:
        """A transaction with no tenant: only the app_* SECURITY DEFINER functions and the
        global tables (platform_credentials, circuit_breakers, oauth_states) are usable.
        """
        async with self._sessions() as session, session.begin():
            await _set_context(session, caller_settings(None))
            yield session

    async def ensure_identity(self, caller: Identity) -> None:
        """Create the caller's organization and user on first sight (just-in-time)."""
        if caller.tenant_id is None:
            return
        async with self.system() as session:
            await session.execute(
                text("SELECT app_ensure_identity(:org, :user, :role)"),
                {"org": caller.tenant_id, "user": caller.user_id, "role": str(caller.role)},
            )

    async def raw_connection(self, **kw: Any) -> asyncpg.Connection:
        """A dedicated asyncpg connection as the app role (for LISTEN). The caller closes it."""
        server_settings = {"application_name": f"{APPLICATION_NAME}-raw"}
        server_settings.update(kw.pop("server_settings", {}))
        conn: asyncpg.Connection = await asyncpg.connect(
            asyncpg_dsn(self.url), server_settings=server_settings, **kw
        )
        return conn

    @asynccontextmanager
    async def session_lock(self, key: int) -> AsyncIterator[bool]:
        """Tries PostgreSQL's session-level advisory lock `key` and holds it for the block;
        yields whether it was taken.

        The lock lives on a connection of a small pool of its own, held for the block: a
        block that also runs units of work never waits on itself for a pooled connection.
        It ends with the block (asyncpg's pool runs `pg_advisory_unlock_all()` when the
        connection goes back) or with the connection: PostgreSQL drops the locks of a
        session whose process died, so nobody waits on a crashed holder.
        """
        pool = await self._lock_pool()
        async with pool.acquire() as conn:
            yield bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))

    async def _lock_pool(self) -> asyncpg.Pool:
        async with self._locks_made:
            if self._locks is None:
                self._locks = await asyncpg.create_pool(
                    asyncpg_dsn(self.url),
                    min_size=0,
                    max_size=LOCK_POOL_SIZE,
                    server_settings={"application_name": f"{APPLICATION_NAME}-locks"},
                )
            return self._locks

    async def dispose(self) -> None:
        if self._locks is not None:
            await self._locks.close()
            self._locks = None
        await self._engine.dispose()
