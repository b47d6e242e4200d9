"""The bus offers an event only to the subscribers of its kind and tenant (and the unkeyed)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from server.events import Event
from server.events.bus import EventBus

TENANT_A, TENANT_B = uuid.uuid4(), uuid.uuid4()


async def _no_connection() -> asyncpg.Connection:
    raise AssertionError("deliver_local needs no LISTEN connection")


async def test_keyed_subscribers_are_asked_only_about_their_own_events() -> None:
    bus = EventBus(_no_connection)
    asked: list[str] = []

    def keyed(event: Event) -> bool:
        asked.append(event.kind)
        return True

    async with (
        bus.subscribe(keyed, key=("STATUS", TENANT_A)) as mine,
        bus.subscribe(lambda e: True) as everything,
    ):
        bus.deliver_local(Event("STATUS", TENANT_B))
        bus.deliver_local(Event("OTHER", TENANT_A))
        bus.deliver_local(Event("STATUS", TENANT_A, data={"n": 1}))
        got = await asyncio.wait_for(anext(mine), 1)
        assert (got.kind, got.tenant_id, got.data) == ("STATUS", TENANT_A, {"n": 1})
        assert asked == ["STATUS"]
        seen = [(await asyncio.wait_for(anext(everything), 1)).tenant_id for _ in range(3)]
        assert seen == [TENANT_B, TENANT_A, TENANT_A]
    assert bus.subscriber_count == 0 and not bus._by_key
