"""Migrations: a clean round trip, a schema that matches the models, and the schema's triggers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from db.bootstrap import (
    create_database_if_missing,
    downgrade_migrations,
    drop_database,
    run_migrations,
)
from db.engine import make_engine
from db.models import metadata
from tests.conftest import MakeTenant, PgServer, unique_name


@pytest.fixture
async def empty_db(pg: PgServer) -> AsyncIterator[str]:
    url = pg.url_for(unique_name("conexoes_mig"))
    await create_database_if_missing(url)
    try:
        yield url
    finally:
        await drop_database(url)


async def _tables(url: str) -> set[str]:
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT c.relname FROM pg_class c WHERE c.relkind IN ('r', 'v')"
                    " AND c.relnamespace = 'public'::regnamespace"
                )
            )
            return set(rows.scalars())
    finally:
        await engine.dispose()


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return compare_metadata(context, metadata)


async def test_upgrade_downgrade_upgrade(empty_db: str) -> None:
    await asyncio.to_thread(run_migrations, empty_db)
    expected = set(metadata.tables) | {"integracao_health", "alembic_version"}
    assert await _tables(empty_db) == expected

    await asyncio.to_thread(downgrade_migrations, empty_db)
    assert await _tables(empty_db) == {"alembic_version"}

    await asyncio.to_thread(run_migrations, empty_db)
    assert await _tables(empty_db) == expected
    # Running it again (another replica starting) changes nothing.
    await asyncio.to_thread(run_migrations, empty_db)


async def test_migrated_schema_matches_the_models(owner_engine: AsyncEngine) -> None:
    async with owner_engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == []


async def test_instagram_window_follows_inbound_messages(
    owner_engine: AsyncEngine, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    contact = uuid.uuid4()
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
        )
        await conn.execute(
            text(
                "INSERT INTO contatos (id, organizacao_id, instagram_igsid) VALUES (:c, :o, 'ig1')"
            ),
            {"c": contact, "o": tenant.id},
        )
        await conn.execute(
            text(
                "INSERT INTO conversas (organizacao_id, canal, contato_id, direcao, external_id,"
                " enviado_em) VALUES (:o, 'instagram', :c, 'inbound', 'mid-1',"
                " '2030-01-01T10:00:00Z'), (:o, 'instagram', :c, 'outbound', 'mid-2', now())"
            ),
            {"o": tenant.id, "c": contact},
        )
        windows = await conn.execute(
            text(
                "SELECT external_id, instagram_window_expires_at::text FROM conversas"
                " WHERE contato_id = :c ORDER BY external_id"
            ),
            {"c": contact},
        )
        contact_window = await conn.execute(
            text("SELECT instagram_window_expires_at::text FROM contatos WHERE id = :c"),
            {"c": contact},
        )
        assert windows.all() == [("mid-1", "2030-01-02 10:00:00+00"), ("mid-2", None)]
        assert contact_window.scalar() == "2030-01-02 10:00:00+00"


async def test_atualizado_em_moves_on_update(
    owner_engine: AsyncEngine, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
        )
        row = await conn.execute(
            text(
                "INSERT INTO contatos (organizacao_id, nome, atualizado_em)"
                " VALUES (:o, 'a', now() - interval '1 day') RETURNING id"
            ),
            {"o": tenant.id},
        )
        contact = row.scalar()
        await conn.execute(text("UPDATE contatos SET nome = 'b' WHERE id = :c"), {"c": contact})
        fresh = await conn.execute(
            text("SELECT atualizado_em > now() - interval '1 minute' FROM contatos WHERE id = :c"),
            {"c": contact},
        )
        assert fresh.scalar() is True
