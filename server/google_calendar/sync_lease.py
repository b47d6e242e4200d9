"""One sync at a time per connection, across replicas, without a transaction held open while
Google answers: a lease on the connection row (`sync_lease`, `sync_lease_ate`), taken and
given back in short transactions.

A sync that finds the lease held marks the row `sync_pendente` and leaves; the holder, when
it applies what it read, sees the mark and reads once more before letting go, so a change
announced during a sync is never dropped. Taking the lease and marking are one UPDATE, and
finishing locks the row, so the two cannot pass each other. A holder that died leaves a
lease that runs out after LEASE.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, case, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import GoogleConnection

# Longer than any sync takes (pages of events.list, each bounded by the client's timeout).
LEASE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class SyncStart:
    """What a sync holding the lease reads from: the calendar and its cursor."""

    calendar_id: str
    sync_token: str | None


def _syncable() -> list[ColumnElement[bool]]:
    return [
        GoogleConnection.deletado_em.is_(None),
        GoogleConnection.status == "active",  # a dead token cannot read; reconnecting restarts
        GoogleConnection.calendar_id.is_not(None),
    ]


async def claim(
    session: AsyncSession, connection_id: uuid.UUID, mine: uuid.UUID, now: dt.datetime
) -> SyncStart | None:
    """Takes the lease for `mine`; None when the connection cannot sync or another sync
    holds it (which is then told to read again)."""
    free = or_(GoogleConnection.sync_lease.is_(None), GoogleConnection.sync_lease_ate < now)
    row = (
        await session.execute(
            update(GoogleConnection)
            .where(GoogleConnection.id == connection_id, *_syncable())
            .values(
                sync_lease=case((free, mine), else_=GoogleConnection.sync_lease),
                sync_lease_ate=case((free, now + LEASE), else_=GoogleConnection.sync_lease_ate),
                sync_pendente=not_(free),
            )
            .returning(
                GoogleConnection.sync_lease,
                GoogleConnection.calendar_id,
                GoogleConnection.sync_token,
            )
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    if row is None or row.sync_lease != mine:
        return None
    return SyncStart(str(row.calendar_id), row.sync_token)


async def lock_held(
    session: AsyncSession, connection_id: uuid.UUID, mine: uuid.UUID
) -> GoogleConnection | None:
    """The connection row, locked until the transaction ends, if `mine` still holds it."""
    row: GoogleConnection | None = await session.scalar(
        select(GoogleConnection)
        .where(GoogleConnection.id == connection_id, GoogleConnection.sync_lease == mine)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return row


async def hand_back(
    session: AsyncSession,
    row: GoogleConnection,
    now: dt.datetime,
    *,
    cursor: str | None,
    read_again: bool,
) -> SyncStart | None:
    """In the transaction holding `row`'s lock: keeps the lease for another round (from
    `cursor`) when a notification came in (or `read_again`) and the connection can still
    sync; else lets go."""
    again = (read_again or row.sync_pendente) and (
        row.deletado_em is None and row.status == "active" and row.calendar_id is not None
    )
    await session.execute(
        update(GoogleConnection)
        .where(GoogleConnection.id == row.id)
        .values(
            sync_lease=row.sync_lease if again else None,
            sync_lease_ate=now + LEASE if again else None,
            sync_pendente=False,
        )
        .execution_options(synchronize_session=False)
    )
    return SyncStart(str(row.calendar_id), cursor) if again else None


async def release(session: AsyncSession, connection_id: uuid.UUID, mine: uuid.UUID) -> None:
    """Lets go of the lease after a failure (only if `mine` still holds it)."""
    await session.execute(
        update(GoogleConnection)
        .where(GoogleConnection.id == connection_id, GoogleConnection.sync_lease == mine)
        .values(sync_lease=None, sync_lease_ate=None)
        .execution_options(synchronize_session=False)
    )
