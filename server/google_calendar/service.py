"""GoogleCalendarService: the thin servicer (proto <-> the Google Calendar room). Every
member may connect their own calendar (the permission table); each call reads and writes
the caller's own connection only."""

from __future__ import annotations

import datetime as dt
from typing import TypeVar

import grpc
from renove.conexoes.v1 import google_calendar_service_pb2 as pb
from renove.conexoes.v1 import google_calendar_service_pb2_grpc as pb_grpc
from renove.conexoes.v1 import resources_pb2
from sqlalchemy import select

from db.models import Meeting
from server.bootstrap import Deps
from server.errors import FieldViolation, InvalidArgument
from server.google_calendar import calendars, events, oauth, views
from server.google_calendar.connection import (
    calendar_client,
    call_google,
    own_connection,
    require_connection,
)
from server.google_calendar.errors import CalendarNotSelected
from server.google_calendar.events import Attendee, EventInput
from server.google_calendar.jobs import register_jobs as _register_jobs
from server.google_oauth import BadGoogleState
from server.idempotency import idempotent
from server.interceptors.context import current_caller
from server.oauth_views import callback_result, hand_binding, oauth_url
from server.paging import decode_token, encode_token, page_size, window
from server.protoconv import from_timestamp
from server.providers.google_calendar import EventsPage
from server.security.browser_binding import nonce_from_metadata


def _input(
    request: pb.CreateGoogleCalendarEventRequest | pb.UpdateGoogleCalendarEventRequest,
    fields: set[str] | None,
) -> EventInput:
    def wanted(name: str) -> bool:
        return fields is None or name in fields

    return EventInput(
        summary=request.summary.strip() if wanted("summary") else None,
        description=request.description if wanted("description") else None,
        location=request.location if wanted("location") else None,
        start=from_timestamp(request.start, request.HasField("start")) if wanted("start") else None,
        end=from_timestamp(request.end, request.HasField("end")) if wanted("end") else None,
        time_zone=request.time_zone or None,
        attendees=[Attendee(a.email.strip(), a.display_name, a.optional) for a in request.attendees]
        if wanted("attendees")
        else None,
        add_google_meet=request.add_google_meet if request.HasField("add_google_meet") else None,
    )


_UPDATABLE = frozenset(
    {
        "summary",
        "description",
        "location",
        "start",
        "end",
        "time_zone",
        "attendees",
        "add_google_meet",
    }
)


def _update_fields(request: pb.UpdateGoogleCalendarEventRequest) -> set[str]:
    if request.update_mask.paths:
        bad = [p for p in request.update_mask.paths if p not in _UPDATABLE]
        if bad:
            raise InvalidArgument(
                "update_mask names fields that cannot change",
                [FieldViolation("update_mask", f"unknown path {p}") for p in bad],
            )
        return set(request.update_mask.paths)
    present = {f.name for f, _ in request.ListFields()} & _UPDATABLE
    if not present:
        raise InvalidArgument("nothing to update", [FieldViolation("update_mask", "empty")])
    return present


W = TypeVar("W", pb.CreateGoogleCalendarEventResponse, pb.UpdateGoogleCalendarEventResponse)


def _written(response_type: type[W], result: events.EventResult) -> W:
    """The answer of a create or an update: the event as Google now has it."""
    return response_type(
        event_id=str(result.event["id"]),
        html_link=str(result.event.get("htmlLink") or ""),
        google_meet_link=result.meet_link,
        event=views.event(
            result.event, calendar_id=result.calendar_id, meeting_id=result.meeting_id
        ),
        google_meet_status=result.meet_status,
        motivo_meet=result.meet_reason,
    )


class GoogleCalendarServicer(pb_grpc.GoogleCalendarServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def GetGoogleAuthUrl(
        self, request: pb.GetGoogleAuthUrlRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetGoogleAuthUrlResponse:
        consent = await oauth.auth_url(self.deps, current_caller(), request.return_to)
        await hand_binding(context, self.deps, consent.binding)
        return pb.GetGoogleAuthUrlResponse(
            oauth=oauth_url(
                url=consent.url,
                state=consent.state,
                expires_at=consent.expires_at,
                scopes=consent.scopes,
                redirect_uri=consent.redirect_uri,
            )
        )

    async def HandleGoogleOAuthCallback(
        self, request: pb.HandleGoogleOAuthCallbackRequest, context: grpc.aio.ServicerContext
    ) -> pb.HandleGoogleOAuthCallbackResponse:
        if not request.state:
            raise BadGoogleState("STATE_INVALID")
        result = await oauth.handle_callback(
            self.deps,
            code=request.code,
            state_token=request.state,
            error=request.error,
            browser_nonce=nonce_from_metadata(context.invocation_metadata()),
        )
        return pb.HandleGoogleOAuthCallbackResponse(
            result=callback_result(result, resources_pb2.CONNECTION_TYPE_GOOGLE_CALENDAR)
        )

    async def GetGoogleConnection(
        self, request: pb.GetGoogleConnectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetGoogleConnectionResponse:
        caller = current_caller()
        async with self.deps.db.unit_of_work(caller) as session:
            row = await own_connection(session, caller)
        connection = views.connection(row)
        connection.usuario_id = str(caller.require_user())
        return pb.GetGoogleConnectionResponse(connection=connection)

    @idempotent
    async def DisconnectGoogle(
        self, request: pb.DisconnectGoogleRequest, context: grpc.aio.ServicerContext
    ) -> pb.DisconnectGoogleResponse:
        row = await oauth.disconnect(self.deps, current_caller())
        return pb.DisconnectGoogleResponse(connection=views.connection(row))

    async def ListGoogleCalendars(
        self, request: pb.ListGoogleCalendarsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListGoogleCalendarsResponse:
        found = await calendars.list_calendars(self.deps, current_caller())
        chunk, token = window(found.calendars, request.page_size, request.page_token, cap=250)
        return pb.ListGoogleCalendarsResponse(
            calendars=[views.calendar(c, found.selected) for c in chunk],
            next_page_token=token,
            google_user_email=found.account_email,
        )

    @idempotent
    async def SelectGoogleCalendar(
        self, request: pb.SelectGoogleCalendarRequest, context: grpc.aio.ServicerContext
    ) -> pb.SelectGoogleCalendarResponse:
        calendar_id = request.calendar_id.strip()
        if not calendar_id:
            raise InvalidArgument.field("calendar_id", "required")
        row = await calendars.select_calendar(
            self.deps,
            current_caller(),
            calendar_id,
            criar_google_meet=request.criar_google_meet
            if request.HasField("criar_google_meet")
            else None,
            sincronizar_eventos=request.sincronizar_eventos
            if request.HasField("sincronizar_eventos")
            else None,
        )
        return pb.SelectGoogleCalendarResponse(connection=views.connection(row))

    async def ListGoogleCalendarEvents(
        self, request: pb.ListGoogleCalendarEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListGoogleCalendarEventsResponse:
        caller = current_caller()
        start = (
            from_timestamp(request.start_time, request.HasField("start_time"))
            or self.deps.clock.now()
        )
        end = from_timestamp(
            request.end_time, request.HasField("end_time")
        ) or start + dt.timedelta(days=30)
        if end <= start:
            raise InvalidArgument.field("end_time", "must be after start_time")
        cursor = decode_token(request.page_token) if request.page_token else {}
        if cursor is None:
            raise InvalidArgument.field("page_token", "not a token this server issued")
        async with self.deps.db.unit_of_work(caller) as session:
            conn = await require_connection(session, caller)
            if not conn.calendar_id:
                raise CalendarNotSelected("select a calendar first")
            calendar_id, conn_id = conn.calendar_id, conn.id
        client = calendar_client(self.deps)
        size = min(page_size(request.page_size), 250)
        page_at = str(cursor.get("g") or "") or None

        async def read(token: str) -> EventsPage:
            return await client.list_window(
                token,
                calendar_id,
                time_min=start,
                time_max=end,
                page_token=page_at,
                max_results=size,
            )

        page = await call_google(self.deps, caller.require_tenant(), conn_id, read)
        items = list(page.items)
        ids = [str(i.get("id")) for i in items]
        async with self.deps.db.unit_of_work(caller) as session:
            rows = await session.execute(
                select(Meeting.google_event_id, Meeting.id).where(
                    Meeting.google_event_id.in_(ids), Meeting.usuario_id == caller.user_id
                )
            )
            linked = {str(event_id): meeting_id for event_id, meeting_id in rows}
        out = [
            views.event(
                i, calendar_id=calendar_id, meeting_id=str(linked.get(str(i.get("id")), ""))
            )
            for i in items
            if i.get("status") != "cancelled"
            and (not request.somente_crm or str(i.get("id")) in linked)
        ]
        out.sort(key=lambda e: e.start.ToDatetime())
        nxt = page.next_page_token
        return pb.ListGoogleCalendarEventsResponse(
            events=out, next_page_token=encode_token({"g": nxt}) if nxt else ""
        )

    @idempotent
    async def CreateGoogleCalendarEvent(
        self, request: pb.CreateGoogleCalendarEventRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateGoogleCalendarEventResponse:
        result = await events.create_event(
            self.deps,
            current_caller(),
            request.meeting_id.strip(),
            _input(request, None),
            send_updates=views.SEND_UPDATES[request.send_updates],
            request_id=request.request_id,
        )
        return _written(pb.CreateGoogleCalendarEventResponse, result)

    @idempotent
    async def UpdateGoogleCalendarEvent(
        self, request: pb.UpdateGoogleCalendarEventRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateGoogleCalendarEventResponse:
        fields = _update_fields(request)
        result = await events.update_event(
            self.deps,
            current_caller(),
            request.id.strip(),
            _input(request, fields),
            send_updates=views.SEND_UPDATES[request.send_updates],
        )
        return _written(pb.UpdateGoogleCalendarEventResponse, result)

    @idempotent
    async def CancelGoogleCalendarEvent(
        self, request: pb.CancelGoogleCalendarEventRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelGoogleCalendarEventResponse:
        meeting_id = await events.cancel_event(
            self.deps,
            current_caller(),
            request.id.strip(),
            send_updates=views.SEND_UPDATES[request.send_updates],
        )
        return pb.CancelGoogleCalendarEventResponse(
            event_id=request.id.strip(), meeting_id=meeting_id
        )


def register(server: grpc.aio.Server, deps: Deps) -> str:
    pb_grpc.add_GoogleCalendarServiceServicer_to_server(GoogleCalendarServicer(deps), server)
    return "renove.conexoes.v1.GoogleCalendarService"


def register_jobs(deps: Deps) -> None:
    _register_jobs(deps)
