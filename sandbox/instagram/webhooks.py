"""Signed messaging webhooks (providers.md 2.2, 6.2).

Bodies are written as Meta writes them: compact, ASCII-escaped JSON with `object: instagram`,
one entry per account (`entry[].id` is the account's `user_id`), `time`/`timestamp` in
milliseconds, signed with `X-Hub-Signature-256: sha256=<hex>` over the exact bytes sent with
the Instagram app secret. A failed POST is retried.
https://developers.facebook.com/docs/instagram-platform/webhooks
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

JSON = dict[str, Any]


def sign(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def messaging_body(account_id: str, items: list[JSON], now_ms: int) -> bytes:
    body = {
        "object": "instagram",
        "entry": [{"id": account_id, "time": now_ms, "messaging": items}],
    }
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass
class Delivery:
    id: int
    url: str
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
            "body": self.body.decode(),
            "attempts": self.attempts,
            "ok": self.ok,
            "done": self.done,
        }


class WebhookDispatcher:
    """Sends each delivery in its own task; `drain()` waits for every one in flight."""

    def __init__(self, retry_delays: Callable[[], tuple[float, ...]], timeout: float) -> None:
        self.retry_delays = retry_delays
        self._client = httpx.AsyncClient(timeout=timeout)
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self.deliveries: list[Delivery] = []

    def send(self, url: str, app_secret: str, body: bytes, *, bad_signature: bool) -> Delivery:
        secret = "not-the-app-secret" if bad_signature else app_secret
        headers = {
            "content-type": "application/json",
            "user-agent": "facebookexternalua",
            "x-hub-signature-256": sign(secret, body),
        }
        delivery = Delivery(next(self._ids), url, body, headers)
        self.deliveries.append(delivery)
        self._start(delivery)
        return delivery

    def resend(self, delivery_id: int) -> Delivery | None:
        """The same bytes again (Meta redelivers: duplicates happen)."""
        old = next((d for d in self.deliveries if d.id == delivery_id), None)
        if old is None:
            return None
        again = Delivery(next(self._ids), old.url, old.body, dict(old.headers))
        self.deliveries.append(again)
        self._start(again)
        return again

    def _start(self, delivery: Delivery) -> None:
        task = asyncio.get_running_loop().create_task(self._run(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, delivery: Delivery) -> None:
        for attempt, delay in enumerate((0.0, *self.retry_delays()), start=1):
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
