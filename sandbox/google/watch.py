"""events.watch and channels.stop (https://developers.google.com/calendar/api/guides/push):
HTTPS addresses only, an id unique per channel, expiration capped, a `sync` notification
right after creation."""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.google.calendar import (
    BASE,
    LIST_SCOPES,
    WRITE_SCOPES,
    Fail,
    authorize,
    calendar_of,
    push_of,
    read_json,
    state_of,
)
from sandbox.google.errors import api_error
from sandbox.google.state import Channel


async def watch(request: Request) -> Response:
    state = state_of(request)
    try:
        grant = authorize(request, WRITE_SCOPES | LIST_SCOPES)
        cal = calendar_of(request, grant, write=False)
        body = await read_json(request)
    except Fail as f:
        return f.response
    address = str(body.get("address") or "")
    if body.get("type") != "web_hook" or not body.get("id") or not address:
        return api_error(400, "required", "id, type=web_hook and address are required")
    if state.settings.require_https and not address.startswith("https://"):
        return api_error(
            400, "push.webhookUrlNotHttps", "WebHook callback must be HTTPS: " + address
        )
    if body["id"] in state.channels:
        return api_error(400, "channelIdNotUnique", "Channel id not unique")
    cap = int((state.clock() + state.settings.channel_ttl_seconds) * 1000)
    asked = int(body.get("expiration") or cap)
    channel = Channel(
        id=str(body["id"]),
        resource_id=secrets.token_urlsafe(20),
        calendar_id=cal.id,
        address=address,
        token=str(body["token"]) if body.get("token") else None,
        expiration_ms=min(asked, cap),
    )
    state.channels[channel.id] = channel
    push_of(request).notify(channel, "sync")
    return JSONResponse(
        {
            "kind": "api#channel",
            "id": channel.id,
            "resourceId": channel.resource_id,
            "resourceUri": f"https://www.googleapis.com/calendar/v3/calendars/{cal.id}/events?alt=json",
            "token": channel.token,
            "expiration": str(channel.expiration_ms),
        }
    )


async def stop(request: Request) -> Response:
    state = state_of(request)
    try:
        authorize(request, WRITE_SCOPES | LIST_SCOPES)
        body = await read_json(request)
    except Fail as f:
        return f.response
    channel = state.channels.get(str(body.get("id") or ""))
    if channel is None or channel.resource_id != body.get("resourceId") or channel.stopped:
        return api_error(404, "notFound", "Channel not found")
    channel.stopped = True
    return Response(status_code=204)


ROUTES = [
    Route(f"{BASE}/calendars/{{calendar_id}}/events/watch", watch, methods=["POST"]),
    Route(f"{BASE}/channels/stop", stop, methods=["POST"]),
]
