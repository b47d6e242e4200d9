"""Engines and URLs: one place that knows how we talk to PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

APP_ROLE = "conexoes_app"
APPLICATION_NAME = "renove-conexoes"


def make_engine(
    url: str,
    *,
    application_name: str = APPLICATION_NAME,
    pool_size: int = 10,
    max_overflow: int = 10,
    **kw: Any,
) -> AsyncEngine:
    """An asyncpg engine with a bounded pool, a liveness check on checkout and a recognizable
    application_name.

    Args:
        url: a `postgresql+asyncpg://` URL (a plain `postgresql://` one is converted).
        application_name: shown in pg_stat_activity.
        pool_size, max_overflow: the pool bounds; extra keyword arguments go to SQLAlchemy.
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
    backend): the pool discards it and tries another, reconnecting as needed.

    This replaces `pool_pre_ping`, whose asyncpg ping is three round trips (BEGIN, `;`,
    ROLLBACK) on every checkout, i.e. on every unit of work. asyncpg reads the socket of an
    idle pooled connection too, so a server that closes it (PostgreSQL's FATAL on shutdown,
    pg_terminate_backend) marks it closed before it is checked out again, without a round
    trip. What neither check can catch (a connection lost between checkout and its first
    statement) raises a disconnect error, which invalidates the pool's older connections.
    """
    raw = getattr(dbapi_connection, "_connection", None)  # the asyncpg Connection
    if raw is not None and raw.is_closed():
        raise exc.DisconnectionError("the pooled connection was closed by the server")


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
