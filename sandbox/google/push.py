"""Calendar push notifications as Google sends them: an empty POST whose headers are the
event (X-Goog-Channel-ID, -Token, -Expiration, X-Goog-Resource-ID, -URI, -State,
X-Goog-Message-Number), retried with backoff on a non-2xx answer."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import httpx

from sandbox.google.state import Channel

_log = logging.getLogger(__name__)
_OK = {102, 200, 201, 202, 204}


class PushDispatcher:
    def __init__(
        self, rewrite: tuple[tuple[str, str], ...], retry_delays: tuple[float, ...] = (0.2, 1.0)
    ) -> None:
        self.rewrite = rewrite
        self._delays = retry_delays
        self._tasks: set[asyncio.Task[None]] = set()
        self._http = httpx.AsyncClient(timeout=10.0)
        self.delivered: list[dict[str, str]] = []

    @property
    def in_flight(self) -> int:
        """Notifications sent but not yet answered (or given up)."""
        return len(self._tasks)

    def target(self, address: str) -> str:
        for public, internal in self.rewrite:
            if address.startswith(public):
                return internal + address[len(public) :]
        return address

    def notify(self, channel: Channel, resource_state: str) -> None:
        number = channel.message_number
        channel.message_number += 1 + (number % 3)  # increasing, not consecutive
        expiration = datetime.fromtimestamp(channel.expiration_ms / 1000, UTC)
        headers = {
            "X-Goog-Channel-ID": channel.id,
            "X-Goog-Channel-Expiration": expiration.strftime("%a, %d %b %Y %H:%M:%S GMT"),
            "X-Goog-Resource-ID": channel.resource_id,
            "X-Goog-Resource-URI": (
                f"https://www.googleapis.com/calendar/v3/calendars/{channel.calendar_id}"
                "/events?alt=json"
            ),
            "X-Goog-Resource-State": resource_state,
            "X-Goog-Message-Number": str(number),
        }
        if channel.token is not None:
            headers["X-Goog-Channel-Token"] = channel.token
        task = asyncio.get_running_loop().create_task(self._deliver(channel.address, headers))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, address: str, headers: dict[str, str]) -> None:
        url = self.target(address)
        for delay in (0.0, *self._delays):
            if delay:
                await asyncio.sleep(delay)
            try:
                response = await self._http.post(url, headers=headers, content=b"")
            except httpx.HTTPError as exc:
                _log.info("push to %s failed: %r", url, exc)
                continue
            if response.status_code in _OK:
                self.delivered.append(headers)
                return
        _log.warning("push to %s gave up", url)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()
