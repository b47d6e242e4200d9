"""Database outages become UNAVAILABLE, not INTERNAL, so the sidecar answers 503 and the
provider retries the delivery later (DESIGN.md "Nothing lost").
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import asyncpg
from sqlalchemy import exc as sa_exc

from server.errors import Unavailable

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

P = ParamSpec("P")
R = TypeVar("R")


def is_database_outage(error: BaseException) -> bool:
    """True when `error` (or anything it wraps) says the database cannot be reached."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _OUTAGE_TYPES):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        orig = getattr(current, "orig", None)
        pending.extend(
            [current.__cause__, current.__context__]
            + ([orig] if isinstance(orig, BaseException) else [])
        )
    return False


def outage_as_unavailable(
    method: Callable[P, Awaitable[R]],
) -> Callable[P, Awaitable[R]]:
    """Decorates a servicer method: database outages are raised as `Unavailable`."""

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except Unavailable:
            raise
        except Exception as exc:
            if is_database_outage(exc):
                raise Unavailable(
                    "the webhook inbox is unavailable; retry later", retry_after=RETRY_AFTER_S
                ) from exc
            raise

    return call
