"""with_heartbeats: items pass through, quiet spells tick, the end of the source ends it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from server.events.heartbeats import with_heartbeats


async def _from(queue: asyncio.Queue[str | None]) -> AsyncIterator[str]:
    while (item := await queue.get()) is not None:
        yield item


async def test_ticks_when_quiet_and_passes_items_through() -> None:
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    stream = with_heartbeats(_from(queue), interval=0.01)
    assert await anext(stream) is None  # nothing yet: a tick
    await queue.put("a")
    seen = await anext(stream)
    while seen is None:  # a tick may come first on a slow machine
        seen = await anext(stream)
    assert seen == "a"
    await queue.put(None)  # the source ends (the bus stopped)
    rest = [item async for item in stream]
    assert set(rest) <= {None}


async def test_an_error_of_the_source_propagates() -> None:
    async def failing() -> AsyncIterator[str]:
        raise LookupError("lagged")
        yield "never"  # pragma: no cover

    with pytest.raises(LookupError):
        async for _ in with_heartbeats(failing(), interval=1.0):
            pass
