"""Google Calendar API v3 client (https://developers.google.com/calendar/api/v3/reference):
calendarList, events insert/get/patch/delete/list with sync tokens, events.watch and
channels.stop. Every failure is translated once (`translate_errors("google_calendar")`:
401 authError -> ProviderAuthError, 403/429 rate limits -> rate limited, 5xx -> server
error); a 410 on a sync token is `SyncTokenGone`. Tokens travel in the Authorization header.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from server.providers.errors import ProviderError, ProviderRejected
from server.providers.http import error_from_response, translate_errors

PROVIDER = "google_calendar"
BASE = "/calendar/v3"
_MAX_PAGES = 100


class SyncTokenGone(ProviderRejected):
    """410 fullSyncRequired: the sync token is no longer valid; run a full sync."""


@dataclass(frozen=True)
class CalendarEntry:
    id: str
    summary: str
    description: str
    primary: bool
    access_role: str
    time_zone: str
    background_color: str


@dataclass(frozen=True)
class EventsPage:
    items: tuple[Mapping[str, Any], ...]
    next_page_token: str | None
    next_sync_token: str | None


@dataclass(frozen=True)
class WatchChannel:
    id: str
    resource_id: str
    expiration: dt.datetime | None


def _calendar(calendar_id: str) -> str:
    return quote(calendar_id, safe="")


class CalendarClient:
    def __init__(self, http: httpx.AsyncClient, api_url: str) -> None:
        self._http = http
        self._base = f"{api_url.rstrip('/')}{BASE}"

    async def _call(
        self,
        method: str,
        path: str,
        token: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        ok_statuses: tuple[int, ...] = (),
    ) -> httpx.Response:
        async with translate_errors(PROVIDER):
            response = await self._http.request(
                method,
                f"{self._base}{path}",
                params=dict(params or {}),
                json=dict(body) if body is not None else None,
                headers={"authorization": f"Bearer {token}"},
            )
            if response.is_success or response.status_code in ok_statuses:
                return response
            error = error_from_response(PROVIDER, response)
            if response.status_code == 410 and path.endswith("/events"):
                raise SyncTokenGone(
                    "sync token expired",
                    provider=PROVIDER,
                    status_code=410,
                    provider_code="fullSyncRequired",
                )
            raise error

    async def calendar_list(self, token: str) -> list[CalendarEntry]:
        """The calendars the account can write to (minAccessRole=writer)."""
        entries: list[CalendarEntry] = []
        page: str | None = None
        for _ in range(_MAX_PAGES):
            params = {"minAccessRole": "writer", "maxResults": "250"}
            if page:
                params["pageToken"] = page
            body = (await self._call("GET", "/users/me/calendarList", token, params=params)).json()
            for item in body.get("items") or ():
                entries.append(
                    CalendarEntry(
                        id=str(item["id"]),
                        summary=str(item.get("summaryOverride") or item.get("summary") or ""),
                        description=str(item.get("description") or ""),
                        primary=bool(item.get("primary")),
                        access_role=str(item.get("accessRole") or ""),
                        time_zone=str(item.get("timeZone") or ""),
                        background_color=str(item.get("backgroundColor") or ""),
                    )
                )
            page = body.get("nextPageToken")
            if not page:
                break
        return entries

    async def insert_event(
        self, token: str, calendar_id: str, event: Mapping[str, Any], *, send_updates: str
    ) -> Mapping[str, Any]:
        """events.insert with conferenceDataVersion=1 (without it a Meet request is silently
        dropped). A client-chosen `id` makes a retried insert answer 409 duplicate."""
        params = {"conferenceDataVersion": "1", "sendUpdates": send_updates}
        path = f"/calendars/{_calendar(calendar_id)}/events"
        response = await self._call("POST", path, token, params=params, body=event)
        result: Mapping[str, Any] = response.json()
        return result

    async def get_event(self, token: str, calendar_id: str, event_id: str) -> Mapping[str, Any]:
        path = f"/calendars/{_calendar(calendar_id)}/events/{quote(event_id, safe='')}"
        result: Mapping[str, Any] = (await self._call("GET", path, token)).json()
        return result

    async def patch_event(
        self,
        token: str,
        calendar_id: str,
        event_id: str,
        patch: Mapping[str, Any],
        *,
        send_updates: str,
    ) -> Mapping[str, Any]:
        params = {"conferenceDataVersion": "1", "sendUpdates": send_updates}
        path = f"/calendars/{_calendar(calendar_id)}/events/{quote(event_id, safe='')}"
        result: Mapping[str, Any] = (
            await self._call("PATCH", path, token, params=params, body=patch)
        ).json()
        return result

    async def delete_event(
        self, token: str, calendar_id: str, event_id: str, *, send_updates: str
    ) -> None:
        """Deleting an event that is already gone (410 deleted) counts as done."""
        path = f"/calendars/{_calendar(calendar_id)}/events/{quote(event_id, safe='')}"
        await self._call(
            "DELETE", path, token, params={"sendUpdates": send_updates}, ok_statuses=(410,)
        )

    async def list_events(
        self, token: str, calendar_id: str, *, sync_token: str | None, page_token: str | None
    ) -> EventsPage:
        """One page of events.list: incremental with `sync_token`, else a full sync (the same
        other parameters either way, as Google requires)."""
        params = {"singleEvents": "true", "showDeleted": "true", "maxResults": "250"}
        if sync_token:
            params["syncToken"] = sync_token
        if page_token:
            params["pageToken"] = page_token
        path = f"/calendars/{_calendar(calendar_id)}/events"
        body = (await self._call("GET", path, token, params=params)).json()
        return EventsPage(
            items=tuple(body.get("items") or ()),
            next_page_token=body.get("nextPageToken"),
            next_sync_token=body.get("nextSyncToken"),
        )

    async def list_window(
        self,
        token: str,
        calendar_id: str,
        *,
        time_min: dt.datetime,
        time_max: dt.datetime,
        page_token: str | None,
        max_results: int,
    ) -> EventsPage:
        """Events overlapping [time_min, time_max), expanded and ordered by start."""
        params = {
            "singleEvents": "true",
            "orderBy": "startTime",
            "timeMin": time_min.isoformat(),
            "timeMax": time_max.isoformat(),
            "maxResults": str(max_results),
        }
        if page_token:
            params["pageToken"] = page_token
        path = f"/calendars/{_calendar(calendar_id)}/events"
        body = (await self._call("GET", path, token, params=params)).json()
        return EventsPage(
            items=tuple(body.get("items") or ()),
            next_page_token=body.get("nextPageToken"),
            next_sync_token=body.get("nextSyncToken"),
        )

    async def watch(
        self,
        token: str,
        calendar_id: str,
        *,
        channel_id: str,
        address: str,
        channel_token: str,
        expiration: dt.datetime | None = None,
    ) -> WatchChannel:
        body: dict[str, Any] = {
            "id": channel_id,
            "type": "web_hook",
            "address": address,
            "token": channel_token,
        }
        if expiration is not None:
            body["expiration"] = str(int(expiration.timestamp() * 1000))
        path = f"/calendars/{_calendar(calendar_id)}/events/watch"
        answer = (await self._call("POST", path, token, body=body)).json()
        raw = answer.get("expiration")
        return WatchChannel(
            id=str(answer["id"]),
            resource_id=str(answer["resourceId"]),
            expiration=dt.datetime.fromtimestamp(int(raw) / 1000, dt.UTC) if raw else None,
        )

    async def stop(self, token: str, channel_id: str, resource_id: str) -> None:
        """channels.stop; a channel Google no longer knows (404) is stopped already."""
        await self._call(
            "POST",
            "/channels/stop",
            token,
            body={"id": channel_id, "resourceId": resource_id},
            ok_statuses=(404,),
        )


def is_gone(exc: ProviderError) -> bool:
    return exc.status_code in (404, 410)
