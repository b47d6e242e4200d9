"""The soak's outbound items beyond WhatsApp and CAPI: e-mails, Instagram replies and calendar
writes, each asked through its RPC the way the CRM asks (one request_id per item, repeated on
UNAVAILABLE/ABORTED/DEADLINE_EXCEEDED until answered)."""

from __future__ import annotations

import datetime as dt
import uuid

from google.protobuf import field_mask_pb2, timestamp_pb2
from renove.conexoes.v1 import email_service_pb2 as epb
from renove.conexoes.v1 import email_service_pb2_grpc as epb_grpc
from renove.conexoes.v1 import google_calendar_service_pb2 as gpb
from renove.conexoes.v1 import google_calendar_service_pb2_grpc as gpb_grpc
from renove.conexoes.v1 import instagram_service_pb2 as ipb
from renove.conexoes.v1 import instagram_service_pb2_grpc as ipb_grpc

from soak.traffic import Item, call_with_retries

Metadata = tuple[tuple[str, str], ...]
RPC_TIMEOUT_S = 15


def timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


async def send_email(
    stub: epb_grpc.EmailServiceStub, md: Metadata, item: Item, retry_until: float
) -> None:
    """An e-mail whose Subject is the item's key: the mail sink files it under that."""
    request = epb.SendEmailRequest(
        to=[epb.EmailAddress(email="cliente@soak.example", nome="Cliente")],
        subject=item.key,
        body_text="Ola! Segue a proposta comercial combinada.",
        body_html="<p>Ola! Segue a <b>proposta comercial</b> combinada.</p>",
        request_id=str(uuid.uuid4()),
    )
    reply = await call_with_retries(
        lambda: stub.SendEmail(request, metadata=md, timeout=RPC_TIMEOUT_S), item, retry_until
    )
    if reply is not None:
        item.link = reply.job_id


async def send_instagram(
    stub: ipb_grpc.InstagramServiceStub,
    md: Metadata,
    recipient: str,
    item: Item,
    retry_until: float,
) -> None:
    """A reply to a customer who wrote in; its text starts with the item's key."""
    request = ipb.SendInstagramMessageRequest(
        recipient_id=recipient,
        message=ipb.InstagramMessageContent(text=f"{item.key} Oi! Segue o catalogo"),
        request_id=str(uuid.uuid4()),
    )
    reply = await call_with_retries(
        lambda: stub.SendInstagramMessage(request, metadata=md, timeout=RPC_TIMEOUT_S),
        item,
        retry_until,
    )
    if reply is not None:
        item.link = reply.job_id


async def write_calendar(
    stub: gpb_grpc.GoogleCalendarServiceStub,
    md: Metadata,
    meeting_id: str,
    item: Item,
    retry_until: float,
) -> None:
    """A meeting's Google event created, then renamed (`<key> v2`): both must reach the
    calendar once. The item is accepted when both RPCs answered."""
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=2)
    create = gpb.CreateGoogleCalendarEventRequest(
        meeting_id=meeting_id,
        summary=f"{item.key} v1",
        start=timestamp(start),
        end=timestamp(start + dt.timedelta(minutes=30)),
        add_google_meet=False,
        request_id=str(uuid.uuid4()),
    )
    created = await call_with_retries(
        lambda: stub.CreateGoogleCalendarEvent(create, metadata=md, timeout=RPC_TIMEOUT_S),
        item,
        retry_until,
    )
    if created is None:
        return
    item.accepted, item.link = False, created.event_id
    update = gpb.UpdateGoogleCalendarEventRequest(
        id=created.event_id,
        summary=f"{item.key} v2 Reuniao confirmada",
        update_mask=field_mask_pb2.FieldMask(paths=["summary"]),
        request_id=str(uuid.uuid4()),
    )
    await call_with_retries(
        lambda: stub.UpdateGoogleCalendarEvent(update, metadata=md, timeout=RPC_TIMEOUT_S),
        item,
        retry_until,
    )
