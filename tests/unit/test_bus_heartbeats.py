"""A watching stream gets its events, a heartbeat (None) after each quiet interval and none
while events flow; it ends when the bus stops, and a lagging one is told so."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest

from server.events import Event
from server.events.bus import EventBus, SubscriberLagged

TENANT = uuid.uuid4()


async def _no_connection() -> asyncpg.Connection:
    raise AssertionError("deliver_local needs no LISTEN connection")


async def test_quiet_streams_tick_and_busy_ones_do_not() -> None:
    bus = EventBus(_no_connection)
    async with bus.watch(lambda e: True, heartbeat=0.2) as quiet:
        started = time.monotonic()
        assert await asyncio.wait_for(anext(quiet), 2) is None  # nothing yet: a tick
        assert time.monotonic() - started >= 0.2  # not before its interval
    async with (
        bus.watch(lambda e: True, heartbeat=0.2, key=("STATUS", TENANT)) as busy,
        bus.subscribe(lambda e: True) as plain,
    ):
        # Events every 0.05 s keep `busy` free of ticks.
        got = []
        for n in range(8):
            bus.deliver_local(Event("STATUS", TENANT, data={"n": n}))
            got.append(await asyncio.wait_for(anext(busy), 1))
            await asyncio.sleep(0.05)
        assert [e.data["n"] for e in got if e is not None] == list(range(8))
        assert None not in got
        # A plain subscription never sees a tick.
        assert (await asyncio.wait_for(anext(plain), 1)).data == {"n": 0}
        await bus.stop()
        # The bus stopped: every stream ends.
        assert [e for e in [item async for item in busy] if e is not None] == []
    assert bus.subscriber_count == 0


async def test_a_stream_that_falls_behind_is_cut_off() -> None:
    bus = EventBus(_no_connection, queue_size=2)
    async with bus.watch(lambda e: True, heartbeat=60) as stream:
        for _ in range(3):
            bus.deliver_local(Event("STATUS", TENANT))
        with pytest.raises(SubscriberLagged):
            async for _ in stream:
                pass
