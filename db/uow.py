"""The unit of work: one transaction, run as one verified caller, under row-level security."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from typing import Any, Protocol

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

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


def caller_args(caller: Identity | None) -> tuple[str, str, str]:
    """The three settings as the first parameters of an `as_caller_*` function (0025)."""
    settings = caller_settings(caller)
    return settings["tenant"], settings["user"], settings["role"]


async def act_as(session: AsyncSession, caller: Identity) -> None:
    """Switches the RLS settings of `session`'s open transaction to `caller` (still
    transaction-local): one transaction may resolve as the service, then write as a tenant.
    """
    await session.execute(SET_CONTEXT, caller_settings(caller))


async def _set_context(session: AsyncSession, settings: dict[str, str]) -> None:
    # One round trip for BEGIN and the settings where the driver allows it (db/begin.py).
    if not await begin_with_settings(await session.connection(), settings):
        await session.execute(SET_CONTEXT, settings)


def _no_span(verb: str) -> AbstractContextManager[Any]:
    return nullcontext()


@asynccontextmanager
async def _discarded_unless_answered(pooled: PoolProxiedConnection) -> AsyncIterator[None]:
    """A statement failing with the server's answer leaves its connection sound; any other
    failure (cancelled or lost mid-statement, a protocol left mid-exchange) means the
    connection is never pooled again."""
    try:
        yield
    except asyncpg.PostgresError:
        raise
    except BaseException:
        await greenlet_spawn(pooled.invalidate)
        raise


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
        # Statements sent on the asyncpg connection itself (fetchrow_as, autocommit) bypass the
        # engine's hooks: a tracer may give them a span each, named by their verb.
        self.statement_span: Callable[[str], AbstractContextManager[Any]] = _no_span
        # Session locks (Database.session_lock): one connection, one statement at a time, and
        # the keys this process holds on it (each with the token of its holder).
        self._locks: asyncpg.Connection | None = None
        self._locks_io = asyncio.Lock()
        self._held: dict[int, object] = {}

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
        async with self._pooled() as pooled:
            driver: asyncpg.Connection = pooled.driver_connection
            async with _discarded_unless_answered(pooled):
                await driver.execute(begin_statement(caller_settings(caller)))
            try:
                yield driver
            except BaseException:
                try:
                    await driver.execute("ROLLBACK")
                except Exception:
                    # Closed, or left mid-statement by a cancellation: never pool it again.
                    await greenlet_spawn(pooled.invalidate)
                raise
            await driver.execute("COMMIT")

    async def fetchrow_as(self, caller: Identity, query: str, *args: Any) -> asyncpg.Record | None:
        """One call in one round trip, as `caller`.

        `query` calls one of the `as_caller_*` functions (migrations 0025, 0026) whose first
        three parameters ($1, $2, $3) are the caller's tenant, user and role: the function sets
        them transaction-locally before it reads or writes, and the call, sent outside any explicit
        transaction, is its own transaction (no BEGIN, no COMMIT, settings gone at its end).
        Row-level security applies as in `unit_of_work`; the remaining parameters follow.
        """
        async with self.autocommit() as pg:
            with self.statement_span("SELECT"):
                return await pg.fetchrow(query, *caller_args(caller), *args)

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled asyncpg connection outside any transaction: each statement is a
        transaction of its own. Only for statements that carry their caller (the `as_caller_*`
        functions, given `caller_args`) or need none (the `app_*` SECURITY DEFINER functions,
        e.g. webhook routing). A connection left mid-statement is never pooled again.
        """
        async with self._pooled() as pooled, _discarded_unless_answered(pooled):
            yield pooled.driver_connection

    @asynccontextmanager
    async def _pooled(self) -> AsyncIterator[PoolProxiedConnection]:
        """A pooled connection without SQLAlchemy's Connection around it (its checkout and
        return cost more than a short statement): the pool's checkout check still runs, and
        the connection goes back to the pool however the block ends."""
        pooled = await self._engine.raw_connection()
        try:
            yield pooled
        finally:
            await greenlet_spawn(pooled.close)

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
        yields whether it was taken (False too when this process holds it already).

        Every lock of the process lives on one connection of its own (not the pool's: a block
        that runs units of work never waits on itself), so it ends with the block or with the
        process: PostgreSQL drops the locks of a session whose process died or whose
        connection was cut, and nobody waits on a crashed holder.
        """
        async with self._locks_io:
            conn = await self._lock_connection()
            # The session's locks are re-entrant: a key this process holds is not taken again.
            held_here = key in self._held
            taken = not held_here and bool(
                await conn.fetchval("SELECT pg_try_advisory_lock($1)", key)
            )
        if not taken:
            yield False
            return
        token = object()
        self._held[key] = token
        try:
            yield True
        finally:
            if self._held.get(key) is token:
                del self._held[key]
            # Shielded: an unlock lost to a cancellation would hold the key for the
            # connection's whole life.
            await asyncio.shield(self._unlock(conn, key))

    async def _lock_connection(self) -> asyncpg.Connection:
        if self._locks is None or self._locks.is_closed():
            # A new session holds none of the old one's locks: neither does this process.
            self._held.clear()
            self._locks = await self.raw_connection(
                server_settings={"application_name": f"{APPLICATION_NAME}-locks"}
            )
        return self._locks

    async def _unlock(self, conn: asyncpg.Connection, key: int) -> None:
        async with self._locks_io:
            if conn.is_closed():  # the lock went with its session
                return
            try:
                await conn.execute("SELECT pg_advisory_unlock($1)", key)
            except Exception:
                # Unsure whether it is still held: end the session, and every lock with it.
                conn.terminate()

    async def dispose(self) -> None:
        if self._locks is not None:
            self._locks.terminate()
            self._locks = None
        await self._engine.dispose()
