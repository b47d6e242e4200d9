"""Time as a dependency: wall time, monotonic time and sleeping behind one small protocol.

Retry waits and breaker reset timeouts are minutes long; tests drive them with `FakeClock`
instead of sleeping. Per-attempt timeouts (`asyncio.timeout`) stay on real loop time on
purpose: they bound real I/O, which a fake clock cannot make faster.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC wall time, for timestamps people read and rows store."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for measuring intervals."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when told to.

    `advance(s)` moves both wall and monotonic time and wakes every sleeper whose deadline
    has passed (they run at the event loop's next turn). With `auto_advance=True`, `sleep(s)`
    advances the clock by `s` itself and returns at once: handy when a single task is being
    timed, as in retry tests. `slept` records every sleep requested, in order.
    """

    def __init__(self, start: datetime = _EPOCH, *, auto_advance: bool = False) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware start time")
        self._start = start.astimezone(UTC)
        self._elapsed = 0.0
        self._auto_advance = auto_advance
        self._seq = itertools.count()  # tie-breaker: futures are not orderable
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        return self._elapsed

    @property
    def sleeping(self) -> int:
        """How many sleepers are still waiting (cancelled ones excluded)."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not go back")
        self._elapsed += seconds
        while self._sleepers and self._sleepers[0][0] <= self._elapsed:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.slept.append(seconds)
        if self._auto_advance:
            self.advance(seconds)
            await asyncio.sleep(0)
            return
        if seconds == 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._elapsed + seconds, next(self._seq), fut))
        await fut
