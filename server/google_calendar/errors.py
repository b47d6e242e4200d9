"""Google Calendar reasons (part of the API, see google_calendar_service.proto)."""

from __future__ import annotations

from server.errors import AlreadyExists, FailedPrecondition, NotFound


class GoogleNotConnected(FailedPrecondition):
    reason = "CONNECTION_NOT_FOUND"


class CalendarNotSelected(FailedPrecondition):
    reason = "CALENDAR_NOT_SELECTED"


class CalendarNotFound(NotFound):
    reason = "CALENDAR_NOT_FOUND"


class MeetingNotFound(NotFound):
    reason = "MEETING_NOT_FOUND"


class EventExists(AlreadyExists):
    reason = "EVENT_EXISTS"


class EventNotFound(NotFound):
    reason = "EVENT_NOT_FOUND"
