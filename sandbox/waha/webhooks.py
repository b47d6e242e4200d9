"""WAHA webhook delivery: envelope, HMAC headers, retries, and a record of every attempt.

Follows docs/providers.md, WAHA. Each (event, webhook) pair is delivered by its own task, so one
slow or failing receiver never holds back another, and, like WAHA, order is not guaranteed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from sandbox.settings import WahaSettings
from sandbox.waha.models import JSON, Session, new_event_id

# When a webhook has `retries: null` WAHA's docs give 15 attempts, 2 s apart.
_DEFAULT_RETRIES: JSON = {"policy": "constant", "delaySeconds": 2, "attempts": 15}


def retry_delays(retries: JSON | None, rng: random.Random) -> list[float]:
    """Seconds to wait before each retry (attempt 2, 3, ...), per WAHA's policies.

    `attempts` is read as the total number of attempts, the first one included.
    """
    spec = {**_DEFAULT_RETRIES, **(retries or {})}
    base = float(spec.get("delaySeconds") or 0)
    attempts = max(1, int(spec.get("attempts") or 1))
    policy = str(spec.get("policy") or "constant")
    delays: list[float] = []
    for index in range(attempts - 1):
        if policy == "linear":
            delays.append(base * (index + 1))
        elif policy == "exponential":
            # 2, 4.1, 8.4...: doubling with up to 20 % jitter.
            delays.append(base * (2**index) * (1 + rng.uniform(0, 0.2)))
        else:
            delays.append(base)
    return delays


def sign(key: str, body: bytes) -> str:
    """Lowercase hex HMAC-SHA512 of the raw body, WAHA's `X-Webhook-Hmac`."""
    return hmac.new(key.encode(), body, hashlib.sha512).hexdigest()


@dataclass
class Delivery:
    """One HTTP attempt to deliver one event to one webhook URL."""

    request_id: str
    event_id: str
    event: str
    session: str
    url: str
    attempt: int
    sent_at_ms: int
    headers: dict[str, str]
    body: bytes
    status_code: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def to_json(self) -> JSON:
        return {
            "requestId": self.request_id,
            "eventId": self.event_id,
            "event": self.event,
            "session": self.session,
            "url": self.url,
            "attempt": self.attempt,
            "sentAt": self.sent_at_ms,
            "statusCode": self.status_code,
            "error": self.error,
            "ok": self.ok,
            "headers": self.headers,
            "envelope": json.loads(self.body),
        }


@dataclass
class WebhookDispatcher:
    """Builds envelopes and delivers them in the background.

    Args:
        settings: the fake's settings (engine, version, timeouts, retry scale).
        clock: seconds since the epoch; injectable so tests can pin timestamps.
    """

    settings: WahaSettings
    clock: Callable[[], float]
    deliveries: list[Delivery] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _client: httpx.AsyncClient | None = None
    _rng: random.Random = field(default_factory=random.Random)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def environment(self) -> JSON:
        engine = self.settings.engine
        return {
            "version": self.settings.version,
            "engine": engine,
            "tier": self.settings.tier,
            "browser": "/usr/bin/google-chrome-stable" if engine in ("WEBJS", "WPP") else None,
            "platform": "linux/x64",
            "worker": {"id": None},
        }

    def envelope(self, session: Session, event: str, payload: JSON) -> JSON:
        now = self.now_ms()
        me = session.me
        return {
            "id": new_event_id(now),
            "timestamp": now,
            "event": event,
            "session": session.name,
            "metadata": session.metadata,
            "me": me.to_json() if me else None,
            "payload": payload,
            "engine": self.settings.engine,
            "environment": self.environment(),
        }

    def emit(self, session: Session, event: str, payload: JSON) -> JSON | None:
        """Send `event` to every webhook of `session` subscribed to it; returns the envelope,
        or None when no webhook subscribed.

        The envelope is built now (so `me`/`metadata` are those of the moment of the event) and
        serialized once: every attempt sends the same bytes, hence the same HMAC.
        """
        hooks = [
            hook
            for hook in session.webhooks()
            if event in (hook.get("events") or []) or "*" in (hook.get("events") or [])
        ]
        if not hooks:
            return None
        # One event, one envelope id, whichever URLs it goes to.
        envelope = self.envelope(session, event, payload)
        # Compact separators and raw UTF-8, as Node's JSON.stringify writes it.
        body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
        for hook in hooks:
            task = asyncio.get_running_loop().create_task(self._deliver(hook, envelope, body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return envelope

    async def drain(self, within: float) -> bool:
        """Wait until no delivery is in flight (retries included); False after `within` s."""
        deadline = asyncio.get_running_loop().time() + within
        while self._tasks:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=remaining)
        return True

    async def reset(self) -> None:
        """Cancel in-flight deliveries and forget the record."""
        await self._cancel_all()
        self.deliveries.clear()

    async def aclose(self) -> None:
        await self._cancel_all()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.settings.webhook_timeout_seconds, follow_redirects=False
            )
        return self._client

    def _headers(self, hook: JSON, body: bytes) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"WAHA/{self.settings.version}",
            # Unique per HTTP request, not per event: receivers dedupe on the body's `id`.
            "X-Webhook-Request-Id": str(uuid.uuid4()),
            "X-Webhook-Timestamp": str(self.now_ms()),
        }
        hmac_config = hook.get("hmac")
        key = hmac_config.get("key") if isinstance(hmac_config, dict) else None
        if key:
            headers["X-Webhook-Hmac"] = sign(str(key), body)
            headers["X-Webhook-Hmac-Algorithm"] = "sha512"
        for custom in hook.get("customHeaders") or []:
            if isinstance(custom, dict) and custom.get("name"):
                headers[str(custom["name"])] = str(custom.get("value", ""))
        return headers

    async def _deliver(self, hook: JSON, envelope: JSON, body: bytes) -> None:
        delays = retry_delays(hook.get("retries"), self._rng)
        url = str(hook.get("url"))
        for attempt in range(1, len(delays) + 2):
            headers = self._headers(hook, body)
            record = Delivery(
                request_id=headers["X-Webhook-Request-Id"],
                event_id=envelope["id"],
                event=envelope["event"],
                session=envelope["session"],
                url=url,
                attempt=attempt,
                sent_at_ms=self.now_ms(),
                headers=headers,
                body=body,
            )
            self.deliveries.append(record)
            try:
                response = await self._http().post(url, content=body, headers=headers)
                record.status_code = response.status_code
            except httpx.HTTPError as exc:
                record.error = f"{type(exc).__name__}: {exc}"
            if record.ok or attempt > len(delays):
                return
            await asyncio.sleep(delays[attempt - 1] * self.settings.webhook_retry_delay_scale)
