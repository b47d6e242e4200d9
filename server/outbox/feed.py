"""Reading the change feed back: replay after a sequence, and the retention boundary.

Runs in the reader's own unit of work, so row-level security limits it to the caller's tenant.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import OutboxEvent, OutboxSequence
from server.errors import FailedPrecondition, InvalidArgument
from server.events import Event

REPLAY_PAGE = 500


class SequenceExpired(FailedPrecondition):
    """The consumer asks to resume before what retention kept: it must resynchronise."""

    reason = "SEQUENCE_EXPIRED"


def event_of(row: OutboxEvent) -> Event:
    return Event(
        row.tipo,
        row.organizacao_id,
        row.usuario_id,
        dict(row.payload or {}),
        occurred_at=row.criado_em,
        id=str(row.id),
        sequence=row.sequencia,
    )


async def check_resumable(session: AsyncSession, after: int) -> int:
    """Returns the tenant's last sequence; raises unless the feed still holds every change
    after `after`. `after = 0` asks for the oldest retained change on: it never expires.

    Raises:
        InvalidArgument: `after` is negative or ahead of the last sequence handed out.
        SequenceExpired: changes after `after` were already removed by retention.
    """
    if after < 0:
        raise InvalidArgument.field("after_sequence", "must be 0 or more")
    state = await session.scalar(select(OutboxSequence))
    last = state.ultima_sequencia if state else 0
    removed = state.removida_ate if state else 0
    if after > last:
        raise InvalidArgument.field(
            "after_sequence", f"ahead of the feed: the last sequence is {last}"
        )
    if 0 < after < removed:
        raise SequenceExpired(
            f"changes up to sequence {removed} are past retention; resynchronise and watch"
            f" with after_sequence >= {removed}",
            metadata={"oldest_available": str(removed + 1), "last_sequence": str(last)},
        )
    return last


async def read_after(
    session: AsyncSession, after: int, *, until: int | None = None, limit: int = REPLAY_PAGE
) -> list[Event]:
    """Recorded changes with `after < sequence [<= until]`, in sequence order."""
    query = select(OutboxEvent).where(OutboxEvent.sequencia > after)
    if until is not None:
        query = query.where(OutboxEvent.sequencia <= until)
    rows = await session.scalars(query.order_by(OutboxEvent.sequencia).limit(limit))
    return [event_of(row) for row in rows]


async def replay_page(
    session: AsyncSession, after: int, *, limit: int = REPLAY_PAGE
) -> list[Event]:
    """One page of the replay after `after`, checked against retention in the same unit of work.

    The boundary is read after the page: retention removes rows and raises the boundary in
    one statement, and each later statement sees at least what an earlier one saw, so a
    boundary still at or below `after` means no change of the page was removed before it
    was read. A purge that raced the read is answered SEQUENCE_EXPIRED, never a silent gap.

    Raises:
        InvalidArgument, SequenceExpired: as `check_resumable`.
    """
    page = await read_after(session, after, limit=limit)
    await check_resumable(session, after)
    return page


async def read_one(session: AsyncSession, sequence: int) -> Event | None:
    row = await session.scalar(select(OutboxEvent).where(OutboxEvent.sequencia == sequence))
    return event_of(row) if row is not None else None


__all__ = [
    "REPLAY_PAGE",
    "SequenceExpired",
    "check_resumable",
    "event_of",
    "read_after",
    "read_one",
    "replay_page",
]
