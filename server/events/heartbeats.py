"""One read loop for every server stream: the bus's events, with a tick when it is quiet."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


async def with_heartbeats(events: AsyncIterator[T], interval: float) -> AsyncIterator[T | None]:
    """Yields each item of `events`, and None whenever `interval` seconds pass without one
    (the stream's cue to send a heartbeat that keeps idle proxies from closing it).

    Ends when `events` ends (the bus stopped: the server is shutting down). Errors of the
    subscription (`SubscriberLagged`) propagate for the stream to answer in its own words.
    """
    # One pending read survives the ticks: cancelling a read would close the subscription.
    pending: asyncio.Task[T] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.create_task(_next(events))
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield None
                continue
            read, pending = pending, None
            try:
                item = read.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


async def _next(events: AsyncIterator[T]) -> T:
    return await anext(events)
