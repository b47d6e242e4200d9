"""Periodic Lead Ads tasks run tenant by tenant: the list comes from the system session (RLS
hides other tenants from everyone else) and one tenant's failure never stops the others."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import text

from server.bootstrap import Deps
from server.providers.errors import ProviderError

_log = logging.getLogger(__name__)
T = TypeVar("T")


async def each_tenant(
    deps: Deps, task: str, fn: Callable[[uuid.UUID], Awaitable[T]]
) -> dict[uuid.UUID, T]:
    """Runs `fn` for every tenant; returns the results of the tenants where it succeeded."""
    async with deps.db.system() as session:
        tenants = list((await session.execute(text("SELECT app_list_tenants()"))).scalars())
    results: dict[uuid.UUID, T] = {}
    for tenant in tenants:
        try:
            results[tenant] = await fn(tenant)
        except ProviderError as exc:  # expected trouble: a warning, not a stack trace
            _log.warning("%s of tenant %s failed: %r", task, tenant, exc)
        except Exception:
            _log.exception("%s of tenant %s failed", task, tenant)
    return results
