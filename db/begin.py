"""Opening a unit of work's transaction in one round trip.

SQLAlchemy's asyncpg adapter sends BEGIN on a transaction's first statement and our unit of
work then sends the three RLS settings: two round trips before any real work. Here BEGIN and
the settings travel together as one simple-protocol query, and the adapter is handed a
transaction object that ends with COMMIT/ROLLBACK as asyncpg's own would. The settings are
UUIDs and a role name, inlined as escaped literals (the simple protocol takes no parameters).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection


class _OpenedTransaction:
    """What the adapter expects of asyncpg's Transaction once BEGIN has already run."""

    __slots__ = ("_connection",)

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def start(self) -> None:  # pragma: no cover - begun already, never started again
        raise RuntimeError("the transaction was begun with its settings")

    async def commit(self) -> None:
        await self._connection.execute("COMMIT")

    async def rollback(self) -> None:
        await self._connection.execute("ROLLBACK")


def literal(value: str) -> str:
    """A standard-conforming SQL string literal."""
    if "\x00" in value:
        raise ValueError("a setting may not contain NUL")
    return "'" + value.replace("'", "''") + "'"


def begin_statement(settings: dict[str, str]) -> str:
    return (
        "BEGIN; SELECT"
        f" set_config('app.current_tenant', {literal(settings['tenant'])}, true),"
        f" set_config('app.current_user', {literal(settings['user'])}, true),"
        f" set_config('app.current_role', {literal(settings['role'])}, true)"
    )


async def begin_with_settings(connection: AsyncConnection, settings: dict[str, str]) -> bool:
    """Begins `connection`'s database transaction with the settings in one round trip.

    False when that is not possible here (a transaction already open on the driver, or an
    adapter without the expected shape); the caller then sets the settings with a statement.
    """
    raw = await connection.get_raw_connection()
    adapter: Any = raw.dbapi_connection
    driver = getattr(adapter, "_connection", None)
    if driver is None or getattr(adapter, "_transaction", False) is not None:
        return False
    if getattr(adapter, "isolation_level", None) == "autocommit" or driver.is_in_transaction():
        return False
    await driver.execute(begin_statement(settings))
    adapter._transaction = _OpenedTransaction(driver)
    return True
