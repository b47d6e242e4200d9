"""Alembic environment: async (asyncpg), URL given programmatically, one upgrade at a time.

Callers set `config.attributes["url"]` (an owner-role URL) or pass a ready sync connection
in `config.attributes["connection"]`; the alembic CLI (`alembic -c db/alembic.ini upgrade
head`) uses DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from db.engine import sqlalchemy_url
from db.models import metadata

# Any fixed number: concurrent replicas starting together migrate one after the other.
MIGRATION_LOCK_KEY = 0x636F6E6578  # "conex"

config = context.config


def _url() -> str:
    # Programmatic callers set attributes["url"]; the alembic CLI falls back to DATABASE_URL.
    url = (
        config.attributes.get("url")
        or config.get_main_option("sqlalchemy.url")
        or os.environ.get("DATABASE_URL")
    )
    if not url:
        raise RuntimeError("no database URL: set config.attributes['url'] or DATABASE_URL")
    return sqlalchemy_url(str(url))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_async())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
