"""Meta Conversions API client: `POST /{pixel_id}/events` with up to 1,000 server events.

https://developers.facebook.com/docs/marketing-api/conversions-api/using-the-api
The token goes in the JSON body (`access_token`), never in a URL that could be logged. Meta's
rejection of a batch is one Graph error (400, code 100) for the whole request; callers isolate
the bad event themselves. Errors are translated once (`translate_errors("meta_capi")`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from server.providers.errors import ProviderRejected
from server.providers.http import raise_for_provider_response, translate_errors

PROVIDER = "meta_capi"
MAX_EVENTS_PER_REQUEST = 1000
# Meta's docs suggest a short client timeout for CAPI; the job's own policy bounds retries.
REQUEST_TIMEOUT_S = 10.0

Guard = Callable[[], AbstractAsyncContextManager[Any]]


@asynccontextmanager
async def _no_guard() -> AsyncIterator[None]:
    yield


@dataclass(frozen=True)
class EventsReceived:
    events_received: int
    fbtrace_id: str
    messages: tuple[str, ...]


class MetaCapiClient:
    def __init__(
        self, http: httpx.AsyncClient, base_url: str, version: str, *, guard: Guard | None = None
    ) -> None:
        self._http = http
        self._base = f"{base_url.rstrip('/')}/{version}"
        self._guard = guard or _no_guard

    async def send_events(
        self,
        pixel_id: str,
        token: str,
        events: Sequence[Mapping[str, Any]],
        *,
        test_event_code: str = "",
    ) -> EventsReceived:
        """Sends `events` in one request.

        Raises:
            ProviderError: Meta's error (ProviderRejected for a rejected batch,
                ProviderAuthError for a dead token, ProviderServerError for 5xx).
        """
        if not 0 < len(events) <= MAX_EVENTS_PER_REQUEST:
            raise ValueError(f"1..{MAX_EVENTS_PER_REQUEST} events per request, got {len(events)}")
        body: dict[str, Any] = {"data": list(events), "access_token": token}
        if test_event_code:
            body["test_event_code"] = test_event_code
        async with self._guard(), translate_errors(PROVIDER):
            response = await self._http.post(
                f"{self._base}/{pixel_id}/events", json=body, timeout=REQUEST_TIMEOUT_S
            )
            raise_for_provider_response(PROVIDER, response)
        try:
            answer = json.loads(response.content)
        except ValueError as exc:
            raise ProviderRejected("answer is not JSON", provider=PROVIDER) from exc
        if not isinstance(answer, dict):
            raise ProviderRejected("answer is not a JSON object", provider=PROVIDER)
        return EventsReceived(
            events_received=int(answer.get("events_received") or 0),
            fbtrace_id=str(answer.get("fbtrace_id") or ""),
            messages=tuple(str(m) for m in answer.get("messages") or ()),
        )
