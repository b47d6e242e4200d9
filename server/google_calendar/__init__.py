"""The Google Calendar room: connection, calendars, meetings as Google events, two-way sync.

What another room may use (declared in pyproject.toml's import-linter contract): a pipeline
event (server/crm_events/publish.py) upserts the meeting it schedules and queues its Google
event in the event's own transaction.
"""

from server.google_calendar.meetings import MeetingValues, ScheduledMeeting, schedule_meeting

__all__ = ["MeetingValues", "ScheduledMeeting", "schedule_meeting"]
