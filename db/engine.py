"""Engines and URLs: one place that knows how we talk to PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

APP_ROLE = "conexoes_app"
APPLICATION_NAME = "renove-conexoes"
# A new connection waits this long for a restarting server: a fast restart (a second or two)
# is ridden out, while an RPC still answers UNAVAILABLE well inside its caller's deadline
# when the database is really down.
CONNECT_WAIT_S = 3.0
_FIRST_RETRY_S = 0.1
_MAX_RETRY_S = 1.0

_log = logging.getLogger(__name__)

# What connecting raises while the server restarts: 57P03 ("the database system is starting
# up" / "shutting down"), the unix socket gone or nobody listening, a connection cut in the
# handshake.
_RESTARTING: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    ConnectionRefusedError,
    ConnectionResetError,
    FileNotFoundError,
)


def make_engine(
    url: str,
    *,
    application_name: str = APPLICATION_NAME,
    pool_size: int = 10,
    max_overflow: int = 10,
    connect_wait_s: float = CONNECT_WAIT_S,
    **kw: Any,
) -> AsyncEngine:
    """An asyncpg engine with a bounded pool, a liveness check on checkout, new connections
    that wait out a server restart, and a recognizable application_name.

    Args:
        url: a `postgresql+asyncpg://` URL (a plain `postgresql://` one is converted).
        application_name: shown in pg_stat_activity.
        pool_size, max_overflow: the pool bounds; extra keyword arguments go to SQLAlchemy.
        connect_wait_s: how long a new connection retries a server that is restarting.
    """
    connect_args: dict[str, Any] = dict(kw.pop("connect_args", {}))
    server_settings = dict(connect_args.get("server_settings", {}))
    server_settings.setdefault("application_name", application_name)
    # Short OLTP queries: JIT compilation costs more than it saves.
    server_settings.setdefault("jit", "off")
    connect_args["server_settings"] = server_settings
    # Each pooled connection keeps its prepared statements: a statement is parsed and planned
    # once per connection, not per call. The rooms together issue a few hundred distinct ones.
    connect_args.setdefault("prepared_statement_cache_size", 1000)
    connect_args.setdefault("async_creator_fn", waiting_connect(asyncpg.connect, connect_wait_s))
    engine = create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args=connect_args,
        **kw,
    )
    event.listen(engine.sync_engine.pool, "checkout", _refuse_closed)
    return engine


def _refuse_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Hands out no connection the server has closed (restart, admin shutdown, terminated
    backend) nor one left inside a transaction: the pool discards it and tries another,
    reconnecting as needed.

    This replaces `pool_pre_ping`, whose asyncpg ping is three round trips (BEGIN, `;`,
    ROLLBACK) on every checkout, i.e. on every unit of work. asyncpg reads the socket of an
    idle pooled connection too, so a server that closes it (PostgreSQL's FATAL on shutdown,
    pg_terminate_backend) marks it closed before it is checked out again, without a round
    trip. What neither check can catch (a connection lost between checkout and its first
    statement) raises a disconnect error, which invalidates the pool's older connections.
    """
    raw = getattr(dbapi_connection, "_connection", None)  # the asyncpg Connection
    if raw is None:
        return
    if raw.is_closed():
        raise exc.DisconnectionError("the pooled connection was closed by the server")
    # A connection given back mid-way (a statement cancelled by a timeout, a transaction
    # begun on the driver and never ended, a server that died mid-statement) would run the
    # next unit of work inside that transaction or fail it ("another operation is in
    # progress"): discarded like a closed one. Both are read from asyncpg's own state.
    if raw.is_in_transaction() or getattr(raw, "_cancellations", None):
        raise exc.DisconnectionError("the pooled connection was left mid-transaction")


def waiting_connect(
    connect: Callable[..., Awaitable[asyncpg.Connection]], wait_s: float
) -> Callable[..., Awaitable[asyncpg.Connection]]:
    """`connect`, retried for up to `wait_s` while the server is restarting.

    After a restart every pooled connection is dead: the checkout check discards them and the
    pool connects anew, and a unit of work that starts while the server is still down or
    starting up waits for it here instead of failing (a failed job would be dead-lettered,
    an RPC answered UNAVAILABLE). Nothing was sent on a connection not yet made, so waiting
    is always safe. Other errors (wrong password, unknown database) fail at once.
    """

    async def connect_waiting(*args: Any, **kwargs: Any) -> asyncpg.Connection:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        delay = _FIRST_RETRY_S
        while True:
            try:
                return await connect(*args, **kwargs)
            except _RESTARTING as error:
                if loop.time() + delay > deadline:
                    raise
                _log.info("database restarting (%s); connecting again in %.1fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY_S)

    return connect_waiting


def sqlalchemy_url(url: str) -> str:
    """The same URL with the asyncpg driver named (`postgresql+asyncpg://`)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def asyncpg_dsn(url: str) -> str:
    """The same URL as a libpq-style DSN asyncpg.connect() accepts (`postgresql://`)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, database: str) -> str:
    """The same server and credentials, another database."""
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def database_name(url: str) -> str:
    name = make_url(url).database
    if not name:
        raise ValueError("the database URL names no database")
    return name


def app_role_url(owner_url: str, password: str) -> str:
    """The owner URL's host and database, logged in as the application role."""
    parsed = make_url(sqlalchemy_url(owner_url)).set(username=APP_ROLE, password=password)
    return parsed.render_as_string(hide_password=False)
