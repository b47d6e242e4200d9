"""Make a database ready for the service: create it, migrate it, give the app role a password.

Everything here runs as the owner (DATABASE_URL, or the embedded superuser); the service
itself then connects with the URL prepare_database returns, as `conexoes_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import threading
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from db.engine import APP_ROLE, app_role_url, asyncpg_dsn, database_name, with_database

log = logging.getLogger(__name__)

ALEMBIC_INI = Path(__file__).resolve().parent / "alembic.ini"
PASSWORD_FILE = "db-app-password"
MAINTENANCE_DB = "postgres"
# Alembic keeps its running context in module globals: one command at a time per process.
_ALEMBIC_LOCK = threading.Lock()


def alembic_config(owner_url: str) -> Config:
    """An Alembic Config for db/migrations, bound to `owner_url` (never written to a file)."""
    config = Config(str(ALEMBIC_INI))
    config.attributes["url"] = owner_url
    return config


def run_migrations(owner_url: str, revision: str = "head") -> None:
    """`alembic upgrade <revision>` as the owner. Blocking: use asyncio.to_thread."""
    with _ALEMBIC_LOCK:
        command.upgrade(alembic_config(owner_url), revision)


def downgrade_migrations(owner_url: str, revision: str = "base") -> None:
    """`alembic downgrade <revision>` as the owner. Blocking: use asyncio.to_thread."""
    with _ALEMBIC_LOCK:
        command.downgrade(alembic_config(owner_url), revision)


async def create_database_if_missing(owner_url: str) -> bool:
    """Create the URL's database unless it exists. Returns True when it was created."""
    name = database_name(owner_url)
    conn = await asyncpg.connect(asyncpg_dsn(with_database(owner_url, MAINTENANCE_DB)))
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        try:
            await conn.execute(f"CREATE DATABASE {_quote_ident(name)}")
        except asyncpg.DuplicateDatabaseError:
            return False  # created concurrently by another process
        return True
    finally:
        await conn.close()


async def drop_database(owner_url: str) -> None:
    """Drop the URL's database, disconnecting whoever is still connected."""
    name = database_name(owner_url)
    conn = await asyncpg.connect(asyncpg_dsn(with_database(owner_url, MAINTENANCE_DB)))
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()


async def prepare_database(
    owner_url: str,
    *,
    data_dir: Path | None = None,
    app_password: str | None = None,
) -> str:
    """Create (if missing) and migrate the database, then return the app role's URL.

    Args:
        owner_url: the owner's URL (DATABASE_URL, or EmbeddedPostgres.owner_url).
        data_dir: where the app role's generated password is kept (file `db-app-password`,
            mode 0600), so every process and restart agrees on it.
        app_password: use this password instead.

    Returns:
        A postgresql+asyncpg URL for `conexoes_app` on the same server and database.
    """
    await create_database_if_missing(owner_url)
    await asyncio.to_thread(run_migrations, owner_url)
    password = app_password or app_role_password(owner_url, data_dir)
    await set_app_password(owner_url, password)
    return app_role_url(owner_url, password)


def app_role_password(owner_url: str, data_dir: Path | None) -> str:
    """The app role's password: kept in `data_dir`, else derived from the owner's password.

    With neither a data folder nor an owner password, a fresh random one (single process).
    """
    if data_dir is not None:
        return _read_or_create_secret(data_dir / PASSWORD_FILE)
    owner_password = make_url(owner_url).password
    if owner_password:
        # Replicas sharing DATABASE_URL derive the same value; it is as secret as the owner's.
        digest = hmac.new(str(owner_password).encode(), APP_ROLE.encode(), hashlib.sha256)
        return digest.hexdigest()
    return secrets.token_hex(24)


async def set_app_password(owner_url: str, password: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(owner_url))
    try:
        literal = await conn.fetchval("SELECT quote_literal($1::text)", password)
        for attempt in range(5):
            try:
                await conn.execute(f"ALTER ROLE {APP_ROLE} PASSWORD {literal}")
                return
            except asyncpg.InternalServerError:
                # "tuple concurrently updated": another process set it at the same instant.
                if attempt == 4:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
    finally:
        await conn.close()


def _read_or_create_secret(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        existing = path.read_text().strip()
        if existing:
            return existing
    # Write aside, then link into place: a reader never sees a half-written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(24))
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process got there first: theirs wins
    finally:
        tmp.unlink()
    return path.read_text().strip()


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
