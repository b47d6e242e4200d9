"""Control endpoints: play the user's side at Google (who consents, what changes in the
calendar, a revoked grant, an expired token, a lost sync token)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.google.calendar import changed
from sandbox.google.push import PushDispatcher
from sandbox.google.state import Account, GoogleState


def _state(request: Request) -> GoogleState:
    state: GoogleState = request.app.state.google
    return state


async def set_account(request: Request) -> Response:
    """The account the next consent screens sign in as."""
    body = await request.json()
    d = Account()
    _state(request).account = Account(
        id=str(body.get("id") or d.id),
        email=str(body.get("email") or d.email),
        name=str(body.get("name") or d.name),
        meet_allowed=bool(body.get("meet_allowed", True)),
    )
    return JSONResponse({"ok": True})


def _find(state: GoogleState, calendar_id: str) -> Any:
    for calendars in state.calendars.values():
        if calendar_id in calendars:
            return calendars[calendar_id]
    return None


async def events(request: Request) -> Response:
    """Every event of a calendar as stored, with what clients sent (`_sendUpdates`)."""
    cal = _find(_state(request), request.path_params["calendar_id"])
    if cal is None:
        return JSONResponse({"error": "unknown calendar"}, status_code=404)
    return JSONResponse({"items": list(cal.events.values())})


async def change_event(request: Request) -> Response:
    """Change an event as its owner would in Google Calendar: `start`/`end` (RFC 3339),
    `summary`, `status: cancelled`, `responses: {email: declined|accepted}`; then push
    (unless `push: false`, when the caller delivers the notification itself)."""
    state = _state(request)
    cal = _find(state, request.path_params["calendar_id"])
    event = cal.events.get(request.path_params["event_id"]) if cal else None
    if event is None:
        return JSONResponse({"error": "unknown event"}, status_code=404)
    body = await request.json()
    for key in ("start", "end"):
        if body.get(key):
            event[key] = {**event[key], "dateTime": body[key]}
    if body.get("summary"):
        event["summary"] = body["summary"]
    if body.get("status"):
        event["status"] = body["status"]
    for attendee in event.get("attendees", []):
        answer = (body.get("responses") or {}).get(attendee["email"])
        if answer:
            attendee["responseStatus"] = answer
    changed(state, event)
    push: PushDispatcher = request.app.state.google_push
    for channel in state.channels.values() if body.get("push", True) else ():
        live = not channel.stopped and channel.expiration_ms / 1000 > state.clock()
        if channel.calendar_id == cal.id and live:
            push.notify(channel, "exists")
    return JSONResponse({k: v for k, v in event.items() if not k.startswith("_")})


async def invalidate_sync_tokens(request: Request) -> Response:
    _state(request).sync_tokens.clear()
    return JSONResponse({"ok": True})


async def revoke_grants(request: Request) -> Response:
    """The user removed the app from their Google account (or the password changed)."""
    for grant in _state(request).grants.values():
        grant.revoked = True
    return JSONResponse({"ok": True})


async def expire_access_tokens(request: Request) -> Response:
    state = _state(request)
    for token, (grant_id, _) in list(state.access.items()):
        state.access[token] = (grant_id, 0.0)
    return JSONResponse({"ok": True})


async def fail_token_endpoint(request: Request) -> Response:
    """The next `times` token calls answer `status` (503 by default): an outage at Google."""
    body = await request.json()
    state = _state(request)
    state.token_failures = [int(body.get("status", 503))] * int(body.get("times", 1))
    return JSONResponse({"ok": True})


async def grants(request: Request) -> Response:
    return JSONResponse(
        [
            {
                "email": g.account.email,
                "revoked": g.revoked,
                "refreshes": g.refreshes,
                "scopes": g.scopes,
            }
            for g in _state(request).grants.values()
        ]
    )


async def channels(request: Request) -> Response:
    return JSONResponse(
        [
            {
                "id": c.id,
                "resourceId": c.resource_id,
                "calendarId": c.calendar_id,
                "address": c.address,
                "expiration": c.expiration_ms,
                "stopped": c.stopped,
            }
            for c in _state(request).channels.values()
        ]
    )


ROUTES = [
    Route("/_control/account", set_account, methods=["POST"]),
    Route("/_control/calendars/{calendar_id}/events", events, methods=["GET"]),
    Route("/_control/calendars/{calendar_id}/events/{event_id}", change_event, methods=["POST"]),
    Route("/_control/sync-tokens/invalidate", invalidate_sync_tokens, methods=["POST"]),
    Route("/_control/grants/revoke", revoke_grants, methods=["POST"]),
    Route("/_control/access-tokens/expire", expire_access_tokens, methods=["POST"]),
    Route("/_control/grants", grants, methods=["GET"]),
    Route("/_control/token-endpoint/fail", fail_token_endpoint, methods=["POST"]),
    Route("/_control/channels", channels, methods=["GET"]),
]
