"""Engines and URLs: one place that knows how we talk to PostgreSQL."""

from __future__ import annotations

from typing import Any

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
    """An asyncpg engine with a bounded pool, pre-ping and a recognizable application_name.

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
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        connect_args=connect_args,
        **kw,
    )


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
