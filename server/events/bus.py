"""The event bus: PostgreSQL NOTIFY out, one LISTEN connection in, fan-out to local streams.

Events are published with ``pg_notify`` inside the unit of work that made the change, so a
subscriber never hears of a change that was rolled back, and every server replica hears of it.
One process keeps a single LISTEN connection and fans each event out to its in-process
subscribers through bounded queues; a subscriber that cannot keep up is cut off (it
re-subscribes and gets a fresh snapshot) instead of slowing everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_log = logging.getLogger(__name__)
CHANNEL = "conexoes_events"
T = TypeVar("T")
# NOTIFY payloads are capped at 8000 bytes; events carry ids and small facts, not documents.
MAX_PAYLOAD = 7900


@dataclass(frozen=True)
class Event:
    kind: str
    tenant_id: uuid.UUID | None
    user_id: uuid.UUID | None = None
    data: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # The tenant's change-feed sequence when the event was recorded in the outbox
    # (server/outbox); None for live-only events.
    sequence: int | None = None
    # False when `data` was left out to fit NOTIFY: the outbox row holds it.
    complete: bool = True
    # One Event object reaches every local subscriber: what they derive from it (a decoded
    # message, a parsed stamp) is computed once here instead of once per stream.
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def derived(self, key: str, compute: Callable[[], T]) -> T:
        if key not in self.memo:
            self.memo[key] = compute()
        return cast(T, self.memo[key])

    def encode(self) -> str:
        fields: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "tenant": str(self.tenant_id) if self.tenant_id else None,
            "user": str(self.user_id) if self.user_id else None,
            "at": self.occurred_at.isoformat(),
            "data": self.data,
        }
        if self.sequence is not None:
            fields["seq"] = self.sequence
        body = json.dumps(fields, separators=(",", ":"), default=str)
        if len(body.encode()) > MAX_PAYLOAD:
            if self.sequence is None:
                raise ValueError(f"event {self.kind} too large for NOTIFY ({len(body)} bytes)")
            # A recorded change is announced without its data; streams read it from the outbox.
            fields["data"], fields["partial"] = {}, True
            body = json.dumps(fields, separators=(",", ":"), default=str)
        return body

    @classmethod
    def decode(cls, payload: str) -> Event:
        raw = json.loads(payload)
        return cls(
            id=raw["id"],
            kind=raw["kind"],
            tenant_id=uuid.UUID(raw["tenant"]) if raw.get("tenant") else None,
            user_id=uuid.UUID(raw["user"]) if raw.get("user") else None,
            occurred_at=datetime.fromisoformat(raw["at"]),
            data=raw.get("data") or {},
            sequence=int(raw["seq"]) if raw.get("seq") is not None else None,
            complete=not raw.get("partial"),
        )


async def publish(session: AsyncSession, event: Event) -> None:
    """Queues ``event`` for delivery when the session's transaction commits."""
    await session.execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {"channel": CHANNEL, "payload": event.encode()},
    )


Predicate = Callable[[Event], bool]


class SubscriberLagged(Exception):
    """The subscriber fell too far behind and was cut off; re-subscribe for a fresh snapshot."""


# (event kind, tenant): the events a keyed subscriber can accept, so an event is offered only
# to the subscribers of its own kind and tenant instead of to every stream of the process.
RouteKey = tuple[str, uuid.UUID | None]


class _Signal(enum.Enum):
    """What a subscriber's queue carries besides events."""

    HEARTBEAT = "heartbeat"  # quiet for its interval: the stream sends a heartbeat
    END = "end"  # the bus stopped, or the subscriber was cut off (`lagged`)


@dataclass(eq=False)
class _Subscriber:
    accepts: Predicate
    queue: asyncio.Queue[Event | _Signal]
    key: RouteKey | None = None
    lagged: bool = False
    # Seconds of quiet after which a heartbeat is queued (None: no heartbeats), and when
    # the subscriber last had something queued (time.monotonic()).
    heartbeat: float | None = None
    last: float = 0.0


class EventBus:
    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        *,
        queue_size: int = 256,
        reconnect_delay: float = 1.0,
    ) -> None:
        self._connect = connect
        self._queue_size = queue_size
        self._reconnect_delay = reconnect_delay
        self._subscribers: set[_Subscriber] = set()
        # Keyed subscribers by key; the unkeyed ones (they see every event) in `_unkeyed`.
        self._by_key: dict[RouteKey, set[_Subscriber]] = {}
        self._unkeyed: set[_Subscriber] = set()
        # Subscribers that want heartbeats, and the one task that queues them for all.
        self._beating: set[_Subscriber] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen_forever(), name="event-bus-listen")
        await asyncio.wait_for(self._ready.wait(), timeout=30)

    async def stop(self) -> None:
        for sub in list(self._subscribers):
            _end(sub)
        for task in (self._task, self._ticker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._ticker = None

    @contextlib.asynccontextmanager
    async def subscribe(
        self, accepts: Predicate, *, key: RouteKey | None = None
    ) -> AsyncIterator[AsyncIterator[Event]]:
        """Registers a subscriber; iterate the yielded stream to receive matching events.

        Subscribe *before* reading the snapshot so no change falls between the two.

        Args:
            key: (kind, tenant) when `accepts` only ever accepts events of that kind and
                tenant: the subscriber is then not even asked about any other event.
        """
        async with self._registered(accepts, key, None) as sub:
            yield self._events(sub)

    @contextlib.asynccontextmanager
    async def watch(
        self, accepts: Predicate, *, heartbeat: float, key: RouteKey | None = None
    ) -> AsyncIterator[AsyncIterator[Event | None]]:
        """`subscribe`, for a server stream: the stream also yields None whenever
        `heartbeat` seconds pass without an event (within a quarter of it), its cue to send
        a heartbeat that keeps idle proxies from closing it.

        One task queues the heartbeats of every stream of the process, so a stream's read
        is a plain queue read: no timer or task per read, which with 10,000 streams cost
        more than the events themselves.
        """
        async with self._registered(accepts, key, heartbeat) as sub:
            yield self._events_and_beats(sub)

    @contextlib.asynccontextmanager
    async def _registered(
        self, accepts: Predicate, key: RouteKey | None, heartbeat: float | None
    ) -> AsyncIterator[_Subscriber]:
        sub = _Subscriber(accepts, asyncio.Queue(self._queue_size), key, heartbeat=heartbeat)
        self._subscribers.add(sub)
        group = self._unkeyed if key is None else self._by_key.setdefault(key, set())
        group.add(sub)
        if heartbeat is not None:
            sub.last = time.monotonic()
            self._beating.add(sub)
            if self._ticker is None or self._ticker.done():
                self._ticker = asyncio.create_task(self._beat_forever(), name="event-bus-beat")
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)
            self._beating.discard(sub)
            group.discard(sub)
            if key is not None and not group:
                self._by_key.pop(key, None)

    async def _events(self, sub: _Subscriber) -> AsyncIterator[Event]:
        async for item in self._events_and_beats(sub):
            if item is not None:
                yield item

    async def _events_and_beats(self, sub: _Subscriber) -> AsyncIterator[Event | None]:
        while True:
            item = await sub.queue.get()
            if item is _Signal.END:
                if sub.lagged:
                    raise SubscriberLagged("event stream fell behind; re-subscribe")
                return
            yield None if item is _Signal.HEARTBEAT else item

    def deliver_local(self, event: Event) -> None:
        keyed = self._by_key.get((event.kind, event.tenant_id), ())
        now = time.monotonic()
        for sub in [*self._unkeyed, *keyed]:
            if sub.lagged or not sub.accepts(event):
                continue
            try:
                sub.queue.put_nowait(event)
                sub.last = now
            except asyncio.QueueFull:
                sub.lagged = True
                _end(sub)

    async def _beat_forever(self) -> None:
        """Queues a heartbeat for each stream quiet for its interval; runs while any wants."""
        while self._beating:
            await asyncio.sleep(min(sub.heartbeat or 0.0 for sub in self._beating) / 4)
            now = time.monotonic()
            for sub in list(self._beating):
                interval = sub.heartbeat or 0.0
                # A full queue is a stream already behind: its events keep it alive.
                if not sub.lagged and now - sub.last >= interval and _put(sub, _Signal.HEARTBEAT):
                    sub.last = now

    def _cut_off_all(self) -> None:
        for sub in list(self._subscribers):
            if not sub.lagged:
                sub.lagged = True
                _end(sub)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            event = Event.decode(payload)
        except (ValueError, KeyError) as exc:
            _log.warning("dropping malformed event payload: %s", exc)
            return
        self.deliver_local(event)

    async def _listen_forever(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect()
                await conn.add_listener(CHANNEL, self._on_notify)
                self._ready.set()
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                while not lost.is_set():
                    # A cheap probe notices a dead connection the termination hook misses.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), timeout=15)
                    if not lost.is_set():
                        await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("event bus connection lost (%s); reconnecting", exc)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()
            # Events may have been missed while disconnected: every stream must resync.
            self._cut_off_all()
            await asyncio.sleep(self._reconnect_delay)


def _put(sub: _Subscriber, item: Event | _Signal) -> bool:
    try:
        sub.queue.put_nowait(item)
    except asyncio.QueueFull:
        return False
    return True


def _end(sub: _Subscriber) -> None:
    """Ends the subscriber's stream on its next read, making room if its queue is full."""
    if not _put(sub, _Signal.END):
        with contextlib.suppress(asyncio.QueueEmpty):
            sub.queue.get_nowait()
        sub.queue.put_nowait(_Signal.END)
