"""Module-scoped databases of their own, for test modules that run full stacks.

Every in-process server runs a queue worker configured with its own provider URLs and keys; on
the shared session database any of them may claim another stack's jobs. A module that starts
its own servers overrides the `database` and `owner_engine` fixtures with these:

    database = isolated_database_fixture()
    owner_engine = isolated_owner_engine_fixture()
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from db.bootstrap import drop_database, prepare_database
from db.engine import make_engine
from tests.conftest import TEST_DATA, MigratedDatabase, PgServer, unique_name


def isolated_database_fixture() -> Any:
    @pytest.fixture(scope="module")
    async def database(pg: PgServer) -> AsyncIterator[MigratedDatabase]:
        name = unique_name("conexoes_iso")
        owner_url = pg.url_for(name)
        app_url = await prepare_database(owner_url, data_dir=TEST_DATA / "test-secrets")
        try:
            yield MigratedDatabase(name=name, owner_url=owner_url, app_url=app_url)
        finally:
            await drop_database(owner_url)

    return database


def isolated_owner_engine_fixture() -> Any:
    @pytest.fixture(scope="module")
    async def owner_engine(database: MigratedDatabase) -> AsyncIterator[AsyncEngine]:
        engine = make_engine(database.owner_url, pool_size=2, max_overflow=2)
        try:
            yield engine
        finally:
            await engine.dispose()

    return owner_engine
