"""WAHA delivery acks for the soak's own WhatsApp sends: as each message reaches the WAHA fake,
the phone reads it and WAHA posts `message.ack` (READ) to our webhook, signed like WAHA signs.
An ack may come before the service has stored its send's result (the room retries it then)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from bench.payloads import Signed, WahaTarget, waha_envelope
from soak.found import waha_ids
from soak.traffic import Item, Sent, post_webhook

STREAM = "whatsapp_ack"
READ = 3
POLL_S = 0.5


def read_ack(target: WahaTarget, waha_id: str, now_ms: int) -> Signed:
    """WAHA's `message.ack` for one of our messages (fromMe), as the fake's ack_json()."""
    chat = waha_id.split("_")[1]
    payload: dict[str, object] = {
        "id": waha_id,
        "from": f"{target.own_phone}@c.us",
        "to": chat,
        "participant": None,
        "fromMe": True,
        "ack": READ,
        "ackName": "READ",
        "_data": {},
    }
    return waha_envelope(target, "message.ack", payload, f"evt_ack_{waha_id}", now_ms)


async def follow(
    http: httpx.AsyncClient,
    sandbox_url: str,
    url: str,
    target: WahaTarget,
    prefix: str,
    sent: Sent,
    until: Callable[[], bool],
    retry_until: float,
) -> None:
    """Until `until()`, acks every message with text `prefix...` that reached WAHA."""
    seen: set[str] = set()
    tasks: set[asyncio.Task[None]] = set()
    while not until():
        try:
            delivered = await waha_ids(http, sandbox_url, prefix)
        except httpx.HTTPError:
            delivered = {}
        for waha_id in delivered:
            if waha_id in seen:
                continue
            seen.add(waha_id)
            item = Item(STREAM, waha_id, waha_id, time.monotonic())
            sent.items.append(item)
            signed = read_ack(target, waha_id, int(time.time() * 1000))
            task = asyncio.create_task(post_webhook(http, url, signed, item, retry_until))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.sleep(POLL_S)
    if tasks:
        await asyncio.gather(*tasks)
