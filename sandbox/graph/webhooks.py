"""Leadgen webhook delivery (docs/providers.md, Meta Graph).

Bodies are written as Meta writes them: compact JSON, ASCII-escaped, ids as JSON *numbers*
(larger than 2^53 for leadgen ids), signed with `X-Hub-Signature-256: sha256=<hex>` over the
exact bytes sent (plus the legacy `X-Hub-Signature: sha1=`). A failed POST is retried.
https://developers.facebook.com/docs/graph-api/webhooks/getting-started
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from sandbox.graph.models import JSON, Lead


def sign(app_secret: str, body: bytes) -> str:
    """`sha256=<lowercase hex HMAC-SHA256(app secret, raw body)>`."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def leadgen_body(leads: list[Lead], now: int) -> bytes:
    """One POST for `leads`: an entry per page, a change per lead, ids as JSON numbers."""
    entries: dict[str, JSON] = {}
    for lead in leads:
        entry = entries.setdefault(
            lead.page_id, {"id": int(lead.page_id), "time": now, "changes": []}
        )
        value: JSON = {
            "leadgen_id": int(lead.id),
            "page_id": int(lead.page_id),
            "form_id": int(lead.form_id),
            "adgroup_id": int(lead.ad_id or 0),
            "ad_id": int(lead.ad_id or 0),
            "created_time": lead.created_time,
        }
        entry["changes"].append({"field": "leadgen", "value": value})
    return json.dumps(
        {"object": "page", "entry": list(entries.values())}, separators=(",", ":")
    ).encode()


@dataclass
class Delivery:
    id: int
    url: str
    leadgen_ids: list[str]
    body: bytes
    headers: dict[str, str]
    attempts: list[JSON] = field(default_factory=list)
    done: bool = False

    @property
    def ok(self) -> bool:
        return any(200 <= (a.get("status") or 0) < 300 for a in self.attempts)

    def to_json(self) -> JSON:
        return {
            "id": self.id,
            "url": self.url,
            "leadgen_ids": self.leadgen_ids,
            "body": self.body.decode(),
            "headers": self.headers,
            "attempts": self.attempts,
            "ok": self.ok,
            "done": self.done,
        }


class WebhookDispatcher:
    """Sends each delivery in its own task; `drain()` waits for every one in flight."""

    def __init__(
        self,
        retry_delays: Callable[[], tuple[float, ...]],
        timeout: float,
    ) -> None:
        self._retry_delays = retry_delays
        self._client = httpx.AsyncClient(timeout=timeout)
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self.deliveries: list[Delivery] = []

    def send(
        self, url: str, app_secret: str, leads: list[Lead], now: int, *, bad_signature: bool
    ) -> Delivery:
        body = leadgen_body(leads, now)
        secret = "not-the-app-secret" if bad_signature else app_secret
        headers = {
            "content-type": "application/json",
            "user-agent": "facebookexternalua",
            "x-hub-signature-256": sign(secret, body),
            "x-hub-signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
        }
        delivery = Delivery(next(self._ids), url, [lead.id for lead in leads], body, headers)
        self.deliveries.append(delivery)
        task = asyncio.get_running_loop().create_task(self._run(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return delivery

    async def _run(self, delivery: Delivery) -> None:
        delays = (0.0, *self._retry_delays())
        for attempt, delay in enumerate(delays, start=1):
            if delay:
                await asyncio.sleep(delay)
            record: JSON = {"attempt": attempt, "status": None, "error": None}
            try:
                response = await self._client.post(
                    delivery.url, content=delivery.body, headers=delivery.headers
                )
                record["status"] = response.status_code
            except httpx.HTTPError as exc:
                record["error"] = type(exc).__name__
            delivery.attempts.append(record)
            if record["status"] is not None and 200 <= record["status"] < 300:
                break
        delivery.done = True

    async def drain(self) -> None:
        """Wait until every delivery in flight has succeeded or run out of retries."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def reset(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.deliveries.clear()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()
