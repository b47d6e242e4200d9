"""Calendar API v3: calendarList, events insert/get/patch/delete/list (sync tokens, 410),
conferences created asynchronously, events.watch and channels.stop (shared/providers.md 8)."""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.google.errors import api_error
from sandbox.google.oauth import bearer_grant
from sandbox.google.push import PushDispatcher
from sandbox.google.state import Calendar, Channel, GoogleState, Grant, event_id

BASE = "/calendar/v3"
WRITE_SCOPES = {
    "https://www.googleapis.com/auth/calendar",
    "https://www.googleapis.com/auth/calendar.events",
}
LIST_SCOPES = {
    "https://www.googleapis.com/auth/calendar",
    "https://www.googleapis.com/auth/calendar.readonly",
    "https://www.googleapis.com/auth/calendar.calendarlist.readonly",
}
_ROLES = ["freeBusyReader", "reader", "writer", "owner"]
_ID = re.compile(r"[a-v0-9]{5,1024}")


def _state(request: Request) -> GoogleState:
    state: GoogleState = request.app.state.google
    return state


def _push(request: Request) -> PushDispatcher:
    push: PushDispatcher = request.app.state.google_push
    return push


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Fail(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        self.response = api_error(status, reason, message)


def _auth(request: Request, scopes: set[str]) -> Grant:
    grant = bearer_grant(request)
    if grant is None:
        raise _Fail(401, "authError", "Invalid Credentials")
    if not scopes & set(grant.scopes):
        raise _Fail(403, "insufficientPermissions", "Insufficient Permission")
    return grant


def _calendar(request: Request, grant: Grant, *, write: bool) -> Calendar:
    state = _state(request)
    cal = state.calendars_of(grant.account).get(request.path_params["calendar_id"])
    if cal is None:
        raise _Fail(404, "notFound", "Not Found")
    if write and cal.access_role not in ("owner", "writer"):
        raise _Fail(403, "forbidden", "Forbidden")
    return cal


def public(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if not k.startswith("_")}


def _record(request: Request) -> None:
    _state(request).calls.append((request.method, request.url.path, dict(request.query_params)))


def _notify(request: Request, cal: Calendar) -> None:
    state, push = _state(request), _push(request)
    for channel in list(state.channels.values()):
        live = not channel.stopped and channel.expiration_ms / 1000 > state.clock()
        if channel.calendar_id == cal.id and live:
            push.notify(channel, "exists")


def changed(state: GoogleState, event: dict[str, Any]) -> None:
    event["_seq"] = state.bump()
    event["updated"] = _now()
    event["etag"] = f'"{event["_seq"]}000"'


def _conference(state: GoogleState, grant: Grant, event: dict[str, Any], request_id: str) -> None:
    status = "pending" if state.settings.conference_pending_reads > 0 else "success"
    if not grant.account.meet_allowed:
        status = "failure"
    event["conferenceData"] = {
        "createRequest": {
            "requestId": request_id,
            "conferenceSolutionKey": {"type": "hangoutsMeet"},
            "status": {"statusCode": status},
        }
    }
    state.conference_reads[event["id"]] = state.settings.conference_pending_reads
    if status == "success":
        _conference_ready(event)


def _conference_ready(event: dict[str, Any]) -> None:
    data = event["conferenceData"]
    code = "-".join(
        "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n)) for n in (3, 4, 3)
    )
    data["createRequest"]["status"]["statusCode"] = "success"
    data["conferenceId"] = code
    data["conferenceSolution"] = {
        "key": {"type": "hangoutsMeet"},
        "name": "Google Meet",
        "iconUri": "https://fonts.gstatic.com/s/i/productlogos/meet_2020q4/v6/web-512dp/logo_meet_2020q4_color_2x_web_512dp.png",
    }
    data["entryPoints"] = [
        {
            "entryPointType": "video",
            "uri": f"https://meet.google.com/{code}",
            "label": f"meet.google.com/{code}",
        }
    ]
    event["hangoutLink"] = f"https://meet.google.com/{code}"


def _times_ok(body: dict[str, Any]) -> bool:
    try:
        start = datetime.fromisoformat(body["start"]["dateTime"])
        end = datetime.fromisoformat(body["end"]["dateTime"])
    except (KeyError, TypeError, ValueError):
        return False
    return end > start


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise _Fail(400, "parseError", "Parse Error") from exc
    if not isinstance(body, dict):
        raise _Fail(400, "parseError", "Parse Error")
    return body


async def calendar_list(request: Request) -> Response:
    try:
        grant = _auth(request, LIST_SCOPES)
    except _Fail as f:
        return f.response
    minimum = request.query_params.get("minAccessRole")
    floor = _ROLES.index(minimum) if minimum in _ROLES else 0
    items = [
        {
            "kind": "calendar#calendarListEntry",
            "id": c.id,
            "summary": c.summary,
            "timeZone": c.time_zone,
            "backgroundColor": c.color,
            "foregroundColor": "#000000",
            "accessRole": c.access_role,
            "selected": True,
            "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]},
            **({"primary": True} if c.primary else {}),
        }
        for c in _state(request).calendars_of(grant.account).values()
        if _ROLES.index(c.access_role) >= floor
    ]
    return JSONResponse({"kind": "calendar#calendarList", "items": items, "nextSyncToken": "cl1"})


async def insert(request: Request) -> Response:
    state = _state(request)
    _record(request)
    try:
        grant = _auth(request, WRITE_SCOPES)
        cal = _calendar(request, grant, write=True)
        body = await _json(request)
    except _Fail as f:
        return f.response
    if not _times_ok(body):
        return api_error(400, "timeRangeEmpty", "The specified time range is empty.")
    eid = str(body.get("id") or event_id())
    if not _ID.fullmatch(eid):
        return api_error(400, "invalid", "Invalid resource id value.")
    if eid in cal.events:
        return api_error(409, "duplicate", "The requested identifier already exists.")
    event: dict[str, Any] = {
        "kind": "calendar#event",
        "id": eid,
        "status": "confirmed",
        "htmlLink": f"https://www.google.com/calendar/event?eid={eid}",
        "created": _now(),
        "summary": body.get("summary", ""),
        "description": body.get("description", ""),
        "location": body.get("location", ""),
        "start": body["start"],
        "end": body["end"],
        "attendees": [
            {
                "email": a["email"],
                "responseStatus": "needsAction",
                **{k: v for k, v in a.items() if k != "email"},
            }
            for a in body.get("attendees") or []
            if isinstance(a, dict) and a.get("email")
        ],
        "organizer": {"email": cal.id, "self": True},
        "creator": {"email": grant.account.email, "self": True},
        "iCalUID": f"{eid}@google.com",
        "sequence": 0,
        "reminders": {"useDefault": True},
        "_sendUpdates": request.query_params.get("sendUpdates", "none"),
    }
    if body.get("extendedProperties"):
        event["extendedProperties"] = body["extendedProperties"]
    create = (body.get("conferenceData") or {}).get("createRequest")
    # Without conferenceDataVersion=1 the conference block is silently ignored.
    if create and request.query_params.get("conferenceDataVersion") == "1":
        _conference(state, grant, event, str(create.get("requestId") or ""))
    changed(state, event)
    cal.events[eid] = event
    _notify(request, cal)
    return JSONResponse(public(event))


def _event(request: Request, cal: Calendar) -> dict[str, Any]:
    event = cal.events.get(request.path_params["event_id"])
    if event is None:
        raise _Fail(404, "notFound", "Not Found")
    return event


async def get(request: Request) -> Response:
    state = _state(request)
    try:
        grant = _auth(request, WRITE_SCOPES | LIST_SCOPES)
        event = _event(request, _calendar(request, grant, write=False))
    except _Fail as f:
        return f.response
    data = event.get("conferenceData")
    if data and data["createRequest"]["status"]["statusCode"] == "pending":
        left = state.conference_reads.get(event["id"], 0)
        if left <= 0:
            _conference_ready(event)
        state.conference_reads[event["id"]] = left - 1
    return JSONResponse(public(event))


async def patch(request: Request) -> Response:
    state = _state(request)
    _record(request)
    try:
        grant = _auth(request, WRITE_SCOPES)
        cal = _calendar(request, grant, write=True)
        event = _event(request, cal)
        body = await _json(request)
    except _Fail as f:
        return f.response
    match = request.headers.get("if-match")
    if match and match != event["etag"]:
        return api_error(412, "conditionNotMet", "Precondition Failed")
    merged = {**event, **{k: v for k, v in body.items() if k in _PATCHABLE}}
    if ("start" in body or "end" in body) and not _times_ok(merged):
        return api_error(400, "timeRangeEmpty", "The specified time range is empty.")
    for key in _PATCHABLE:
        if key in body and key != "conferenceData":
            event[key] = body[key]
    if "attendees" in body:
        event["attendees"] = [
            {"responseStatus": "needsAction", **a} for a in body["attendees"] or []
        ]
    create = (body.get("conferenceData") or {}).get("createRequest")
    if create and request.query_params.get("conferenceDataVersion") == "1":
        _conference(state, grant, event, str(create.get("requestId") or ""))
    event["sequence"] = int(event.get("sequence", 0)) + 1
    event["_sendUpdates"] = request.query_params.get("sendUpdates", "none")
    changed(state, event)
    _notify(request, cal)
    return JSONResponse(public(event))


_PATCHABLE = (
    "summary",
    "description",
    "location",
    "start",
    "end",
    "attendees",
    "conferenceData",
    "status",
)


async def delete(request: Request) -> Response:
    state = _state(request)
    _record(request)
    try:
        grant = _auth(request, WRITE_SCOPES)
        cal = _calendar(request, grant, write=True)
        event = _event(request, cal)
    except _Fail as f:
        return f.response
    if event["status"] == "cancelled":
        return api_error(410, "deleted", "Resource has been deleted")
    event["status"] = "cancelled"
    event["_sendUpdates"] = request.query_params.get("sendUpdates", "none")
    changed(state, event)
    _notify(request, cal)
    return Response(status_code=204)


async def list_events(request: Request) -> Response:
    state, q = _state(request), request.query_params
    try:
        grant = _auth(request, WRITE_SCOPES | LIST_SCOPES)
        cal = _calendar(request, grant, write=False)
    except _Fail as f:
        return f.response
    events = sorted(cal.events.values(), key=lambda e: e["_seq"])
    sync = q.get("syncToken")
    if sync:
        for banned in ("timeMin", "timeMax", "updatedMin", "q", "orderBy", "iCalUID"):
            if banned in q:
                return api_error(400, "invalid", f"{banned} is not allowed with syncToken")
        found = state.sync_tokens.get(sync)
        if found is None or found[0] != cal.id:
            return api_error(
                410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required."
            )
        events = [e for e in events if e["_seq"] > found[1]]
    else:
        if q.get("showDeleted") != "true":
            events = [e for e in events if e["status"] != "cancelled"]
        t_min, t_max = q.get("timeMin"), q.get("timeMax")
        if t_min:
            events = [e for e in events if _end(e) > datetime.fromisoformat(t_min)]
        if t_max:
            events = [e for e in events if _start(e) < datetime.fromisoformat(t_max)]
    size = min(int(q.get("maxResults") or 250), 2500)
    offset = int(q.get("pageToken") or 0)
    page = events[offset : offset + size]
    body: dict[str, Any] = {
        "kind": "calendar#events",
        "summary": cal.summary,
        "timeZone": cal.time_zone,
        "updated": _now(),
        "items": [public(e) for e in page],
    }
    if offset + size < len(events):
        body["nextPageToken"] = str(offset + size)
    else:
        body["nextSyncToken"] = state.new_sync_token(cal.id)
    return JSONResponse(body)


def _start(e: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(e["start"]["dateTime"])


def _end(e: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(e["end"]["dateTime"])


async def watch(request: Request) -> Response:
    state = _state(request)
    try:
        grant = _auth(request, WRITE_SCOPES | LIST_SCOPES)
        cal = _calendar(request, grant, write=False)
        body = await _json(request)
    except _Fail as f:
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
    _push(request).notify(channel, "sync")
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
    state = _state(request)
    try:
        _auth(request, WRITE_SCOPES | LIST_SCOPES)
        body = await _json(request)
    except _Fail as f:
        return f.response
    channel = state.channels.get(str(body.get("id") or ""))
    if channel is None or channel.resource_id != body.get("resourceId") or channel.stopped:
        return api_error(404, "notFound", "Channel not found")
    channel.stopped = True
    return Response(status_code=204)


ROUTES = [
    Route(f"{BASE}/users/me/calendarList", calendar_list, methods=["GET"]),
    Route(f"{BASE}/calendars/{{calendar_id}}/events/watch", watch, methods=["POST"]),
    Route(f"{BASE}/calendars/{{calendar_id}}/events", insert, methods=["POST"]),
    Route(f"{BASE}/calendars/{{calendar_id}}/events", list_events, methods=["GET"]),
    Route(f"{BASE}/calendars/{{calendar_id}}/events/{{event_id}}", get, methods=["GET"]),
    Route(f"{BASE}/calendars/{{calendar_id}}/events/{{event_id}}", patch, methods=["PATCH"]),
    Route(f"{BASE}/calendars/{{calendar_id}}/events/{{event_id}}", delete, methods=["DELETE"]),
    Route(f"{BASE}/channels/stop", stop, methods=["POST"]),
]
