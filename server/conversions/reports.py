"""The send log (filters, keyset paging, newest first) and the statistics of a period."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import ConversionsApiLog
from server.errors import InvalidArgument
from server.paging import keyset_after, keyset_page, page_size


@dataclass(frozen=True)
class LogFilter:
    status: str = ""
    event_name: str = ""
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    entidade_id: str = ""


def _filtered(query: Select[Any], f: LogFilter) -> Select[Any]:
    if f.start and f.end and f.start > f.end:
        raise InvalidArgument.field("start_time", "after end_time")
    if f.status:
        query = query.where(ConversionsApiLog.status == f.status)
    if f.event_name:
        query = query.where(ConversionsApiLog.event_name == f.event_name)
    if f.start:
        query = query.where(ConversionsApiLog.criado_em >= f.start)
    if f.end:
        query = query.where(ConversionsApiLog.criado_em < f.end)
    if f.entidade_id:
        try:
            entity = uuid.UUID(f.entidade_id)
        except ValueError as exc:
            raise InvalidArgument.field("entidade_id", "not a uuid") from exc
        query = query.where(ConversionsApiLog.entidade_id == entity)
    return query


async def list_logs(
    session: AsyncSession, f: LogFilter, size: int, token: str
) -> tuple[list[ConversionsApiLog], str, int]:
    size = page_size(size)
    query = _filtered(select(ConversionsApiLog), f)
    total = await session.scalar(_filtered(select(func.count(ConversionsApiLog.id)), f)) or 0
    after = keyset_after(
        token,
        (("t", "time"), ("i", "uuid")),
        (ConversionsApiLog.criado_em, ConversionsApiLog.id),
        descending=True,
    )
    if after is not None:
        query = query.where(after)
    rows = list(
        await session.scalars(
            query.order_by(ConversionsApiLog.criado_em.desc(), ConversionsApiLog.id.desc()).limit(
                size + 1
            )
        )
    )
    page, next_token = keyset_page(
        rows, size, lambda r: {"t": r.criado_em.isoformat(), "i": str(r.id)}
    )
    return page, next_token, int(total)


@dataclass
class EventCounts:
    """`sent`/`failed`: Meta accepted/rejected them; `not_sent`: closed without reaching Meta
    (older than 7 days, or out of retries)."""

    sent: int = 0
    failed: int = 0
    pending: int = 0
    not_sent: int = 0

    @property
    def attempted(self) -> int:
        return self.sent + self.failed


@dataclass
class Stats:
    start: dt.datetime
    end: dt.datetime
    total: EventCounts
    last_send: dt.datetime | None
    by_event: dict[str, EventCounts] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        done = self.total.attempted
        return round(100.0 * self.total.sent / done, 1) if done else 0.0


async def stats(session: AsyncSession, now: dt.datetime, days: int) -> Stats:
    if not 0 <= days <= 365:
        raise InvalidArgument.field("period_days", "between 1 and 365")
    start = now - dt.timedelta(days=days or 30)
    log = ConversionsApiLog
    rows = await session.execute(
        select(
            log.event_name,
            func.count().filter(log.status == "sent"),
            func.count().filter(log.status == "failed", log.enviado_em.is_not(None)),
            func.count().filter(log.status == "pending"),
            func.count().filter(log.status == "failed", log.enviado_em.is_(None)),
            func.max(log.enviado_em),
        )
        .where(log.teste.is_(False), log.criado_em >= start)
        .group_by(log.event_name)
        .order_by(log.event_name)
    )
    result = Stats(start=start, end=now, total=EventCounts(), last_send=None)
    for name, sent, failed, pending, not_sent, last in rows:
        result.by_event[name] = EventCounts(sent, failed, pending, not_sent)
        result.total.sent += sent
        result.total.failed += failed
        result.total.pending += pending
        result.total.not_sent += not_sent
        if last is not None and (result.last_send is None or last > result.last_send):
            result.last_send = last
    return result
