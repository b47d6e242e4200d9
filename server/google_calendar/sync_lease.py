"""One sync at a time per connection, across replicas, without a transaction held open while
Google answers: a lease on the connection row (`sync_lease`, `sync_lease_ate`), taken and
given back in short transactions.

A sync that finds the lease held marks the row `sync_pendente` and leaves; the holder, when
it applies what it read, sees the mark and reads once more before letting go, so a change
announced during a sync is never dropped. Taking the lease and marking are one UPDATE, and
finishing locks the row, so the two cannot pass each other.

Who holds the lease is decided by a PostgreSQL advisory lock (`lock_key`) each sync holds for
as long as it runs (`Database.session_lock`): the sync that gets it takes the lease, whatever
the row says; one that does not marks the row and leaves. A holder that died (its process
killed, its connection cut) loses the lock with its session, so the next notification syncs
at once instead of waiting for the row's lease to run out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, select, update
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


def lock_key(connection_id: uuid.UUID) -> int:
    """The advisory lock a sync of the connection holds while it runs."""
    digest = hashlib.blake2b(connection_id.bytes, digest_size=8, key=b"google-calendar-sync")
    return int.from_bytes(digest.digest(), "big", signed=True)


async def claim(
    session: AsyncSession,
    connection_id: uuid.UUID,
    mine: uuid.UUID,
    now: dt.datetime,
    *,
    alone: bool,
) -> SyncStart | None:
    """Takes the lease for `mine` when `alone` (this sync holds the connection's advisory
    lock: any other holder of the lease is dead); else marks the row for the running sync to
    read again and returns None, as it does when the connection cannot sync."""
    row = (
        await session.execute(
            update(GoogleConnection)
            .where(GoogleConnection.id == connection_id, *_syncable())
            .values(
                sync_lease=mine if alone else GoogleConnection.sync_lease,
                sync_lease_ate=now + LEASE if alone else GoogleConnection.sync_lease_ate,
                sync_pendente=not alone,
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
