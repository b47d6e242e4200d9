"""Events wait out a dead token: while the tenant's CAPI configuration is revoked or expired,
its `capi_event` jobs are postponed without spending attempts and their log rows stay
pending (nothing is sent with a token Meta refuses). Saving a new token recovers the
configuration (alerts resolved, CONNECTION_CHANGED on the feed) and makes them due again.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import ConversionsApiConfig, PendingEvent
from server.conversions.errors import TokenParked
from server.resilience.alerts import connection_recovered

CONNECTION_TYPE = "META_CONVERSIONS_API"
DEAD_STATUSES = frozenset({"revoked", "expired"})
# A parked job looks again after this long, should a release ever be missed.
PARKED_FOR_S = 6 * 3600.0


def is_dead(cfg: ConversionsApiConfig) -> bool:
    return cfg.status in DEAD_STATUSES


def parked() -> TokenParked:
    return TokenParked(
        "the Conversions API token was refused; save a new token", retry_after=PARKED_FOR_S
    )


async def recover(session: AsyncSession, cfg: ConversionsApiConfig, at: dt.datetime) -> int:
    """A new token was saved for a dead configuration: active again, its alerts resolved, an
    event on the feed, and the parked jobs due now. Returns how many jobs were released."""
    await connection_recovered(
        session,
        model=ConversionsApiConfig,
        connection_id=cfg.id,
        tenant_id=cfg.organizacao_id,
        owner_id=None,
        connection_type=CONNECTION_TYPE,
        at=at,
    )
    released = await session.execute(
        update(PendingEvent)
        .where(PendingEvent.operacao == "capi_event", PendingEvent.status == "pending")
        .values(proxima_tentativa=func.now())
    )
    return int(released.rowcount)  # type: ignore[attr-defined]
