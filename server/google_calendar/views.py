"""Pure functions from rows and Google events to protos."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from renove.conexoes.v1 import google_calendar_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2

from db.models import GoogleConnection
from server.google_calendar.sync import event_time, meet_link, parse_time
from server.protoconv import timestamp
from server.providers.google_calendar import CalendarEntry

_STATUS = {
    "active": resources_pb2.CONNECTION_STATUS_ACTIVE,
    "expired": resources_pb2.CONNECTION_STATUS_EXPIRED,
    "revoked": resources_pb2.CONNECTION_STATUS_REVOKED,
    "error": resources_pb2.CONNECTION_STATUS_ERROR,
}
SEND_UPDATES = {
    pb.SEND_UPDATES_UNSPECIFIED: "all",
    pb.SEND_UPDATES_ALL: "all",
    pb.SEND_UPDATES_EXTERNAL_ONLY: "externalOnly",
    pb.SEND_UPDATES_NONE: "none",
}
CALENDAR_URL = "https://calendar.google.com/calendar/r"


def connection(row: GoogleConnection | None) -> pb.GoogleCalendarConnection:
    if row is None or row.deletado_em is not None:
        return pb.GoogleCalendarConnection(
            usuario_id=str(row.usuario_id) if row else "",
            status=resources_pb2.CONNECTION_STATUS_DISCONNECTED,
        )
    return pb.GoogleCalendarConnection(
        id=str(row.id),
        usuario_id=str(row.usuario_id),
        status=_STATUS.get(row.status, resources_pb2.CONNECTION_STATUS_ERROR),
        google_user_id=row.google_user_id or "",
        google_user_email=row.google_user_email or "",
        google_user_name=row.google_user_name or "",
        calendar_id=row.calendar_id or "",
        calendar_name=row.calendar_name or "",
        criar_google_meet=row.criar_google_meet is not False,
        sincronizar_eventos=row.sincronizar_eventos is not False,
        scopes=list(row.scopes_concedidos or ()),
        token_expires_at=timestamp(row.token_expires_at),
        calendar_url=CALENDAR_URL if row.calendar_id else "",
        ultimo_sync=timestamp(row.ultimo_sync),
        ultimo_erro=row.ultimo_erro or "",
        conectado_em=timestamp(row.conectado_em),
        criado_em=timestamp(row.criado_em),
        atualizado_em=timestamp(row.atualizado_em),
        sync_status=row.sync_status,
        sync_falhas=row.sync_falhas,
        ultimo_sync_erro=row.ultimo_sync_erro or "",
        push_ativo=bool(row.channel_id),
        channel_expires_at=timestamp(row.channel_expires_at),
    )


def calendar(entry: CalendarEntry, selected: str | None) -> pb.GoogleCalendar:
    return pb.GoogleCalendar(
        calendar_id=entry.id,
        calendar_name=entry.summary,
        description=entry.description,
        primary=entry.primary,
        access_role=entry.access_role,
        time_zone=entry.time_zone,
        background_color=entry.background_color,
        selecionado=entry.id == selected,
    )


def event(
    item: Mapping[str, Any], *, calendar_id: str, meeting_id: str = ""
) -> pb.GoogleCalendarEvent:
    start = item.get("start") or {}
    return pb.GoogleCalendarEvent(
        event_id=str(item.get("id") or ""),
        meeting_id=meeting_id,
        calendar_id=calendar_id,
        summary=str(item.get("summary") or ""),
        description=str(item.get("description") or ""),
        location=str(item.get("location") or ""),
        start=timestamp(event_time(start)),
        end=timestamp(event_time(item.get("end"))),
        time_zone=str(start.get("timeZone") or "") if isinstance(start, Mapping) else "",
        attendees=[
            pb.EventAttendee(
                email=str(a.get("email") or ""),
                display_name=str(a.get("displayName") or ""),
                optional=bool(a.get("optional")),
                response_status=str(a.get("responseStatus") or ""),
            )
            for a in item.get("attendees") or ()
        ],
        html_link=str(item.get("htmlLink") or ""),
        google_meet_link=meet_link(item) or "",
        status=str(item.get("status") or ""),
        updated=timestamp(parse_time(item.get("updated"))),
    )
