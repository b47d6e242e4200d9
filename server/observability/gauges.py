"""Gauges sampled from the database: queue and inbox depth and age, connections by status,
tokens expiring within 7 days, outbox lag, and each circuit breaker's state as stored in
`circuit_breakers` (the last transition any process recorded, so every replica reports the
same state instead of its own).

One aggregate query (`app_observability_gauges()`, migration 0014) every `interval` seconds
per process; a scrape reads the last sample and never touches the database. Every replica
reports the same figures: dashboards take `max` across instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import Gauge
from sqlalchemy import text

from db.uow import Database
from server.observability import metrics

_log = logging.getLogger(__name__)

_BY_NAME: dict[str, tuple[Gauge, int]] = {
    # metric -> (gauge, how many labels it takes from label_a, label_b)
    "queue_depth": (metrics.QUEUE_DEPTH, 2),
    "queue_oldest_age": (metrics.QUEUE_OLDEST_AGE, 1),
    "inbox_unprocessed": (metrics.INBOX_DEPTH, 1),
    "inbox_oldest_age": (metrics.INBOX_OLDEST_AGE, 1),
    "connections": (metrics.CONNECTIONS, 2),
    "tokens_expiring": (metrics.TOKENS_EXPIRING, 1),
    "outbox_lag": (metrics.OUTBOX_LAG, 0),
}


_BREAKER_LEVEL = {"closed": 0, "half_open": 1, "open": 2}


async def sample_once(db: Database) -> None:
    async with db.system() as session:
        rows = (await session.execute(text("SELECT * FROM app_observability_gauges()"))).all()
        breakers = await session.execute(text("SELECT provider, state FROM circuit_breakers"))
        for provider, state in breakers:
            metrics.BREAKER_STATE.labels(provider).set(_BREAKER_LEVEL.get(state, 0))
    seen: dict[str, set[tuple[str, ...]]] = {name: set() for name in _BY_NAME}
    for metric, label_a, label_b, value in rows:
        gauge, arity = _BY_NAME[metric]
        labels = (label_a, label_b)[:arity]
        (gauge.labels(*labels) if labels else gauge).set(value)
        seen[metric].add(labels)
    # A series that vanished from the sample (queue drained, status left) reads 0, not stale.
    for metric, (gauge, arity) in _BY_NAME.items():
        if arity == 0:
            if not seen[metric]:
                gauge.set(0)
            continue
        for sample in list(next(iter(gauge.collect())).samples):
            labels = tuple(sample.labels[name] for name in gauge._labelnames)
            if labels not in seen[metric]:
                gauge.labels(*labels).set(0)


class GaugeSampler:
    def __init__(self, db: Database, interval_s: float) -> None:
        self._db = db
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None and self._interval > 0:
            self._task = asyncio.create_task(self._run(), name="metrics-gauges")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await sample_once(self._db)
            except Exception as exc:
                metrics.SAMPLE_ERRORS.inc()
                _log.warning("sampling the metrics gauges failed: %s", type(exc).__name__)
            await asyncio.sleep(self._interval)
