"""Database outages become UNAVAILABLE with RetryInfo, not INTERNAL, on every RPC: the caller
(the sidecar answering a provider 503, the frontend, another service) retries later, and a
webhook is never lost (docs/architecture.md, "A webhook's way").
"""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy import exc as sa_exc

from server.errors import DomainError, Unavailable

# What an unreachable, restarting or shut-down server raises somewhere in the cause chain:
# socket errors, asyncpg's connection errors and the 57P0x "operator intervention" class
# (admin shutdown, cannot connect now), connection-pool timeouts.
_OUTAGE_TYPES: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
    sa_exc.TimeoutError,
)
RETRY_AFTER_S = 5.0


def _broken_protocol(error: BaseException) -> bool:
    # asyncpg's "cannot switch to state N; another operation (M) is in progress": the
    # connection's protocol was left mid-exchange (seen once under a PostgreSQL restart). The
    # statement never ran; the connection is discarded and the work can be tried again.
    return isinstance(error, asyncpg.exceptions.InternalClientError) and str(error).startswith(
        "cannot switch to state"
    )


def is_database_outage(error: BaseException) -> bool:
    """True when `error` (or anything it wraps) says the database cannot be reached."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _OUTAGE_TYPES) or _broken_protocol(current):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        orig = getattr(current, "orig", None)
        pending.extend(
            [current.__cause__, current.__context__]
            + ([orig] if isinstance(orig, BaseException) else [])
        )
    return False


class DatabaseUnavailable(Unavailable):
    reason = "DATABASE_UNAVAILABLE"


def as_unavailable(error: BaseException) -> DatabaseUnavailable | None:
    """The UNAVAILABLE error to answer when `error` is a database outage, else None.

    A DomainError was classified where it was raised: one about a provider carries the
    provider's own socket or TLS failure in its chain (an SMTP server's certificate, a refused
    connection), which is not the database's.
    """
    if isinstance(error, DomainError) or not is_database_outage(error):
        return None
    return DatabaseUnavailable(
        "the database is unavailable; retry later", retry_after=RETRY_AFTER_S
    )
