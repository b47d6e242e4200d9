"""The soak's streams: per provider and direction, how item `i` is sent and what it is looked
up by afterwards (soak/found.py). WAHA acks follow the WhatsApp sends (soak/acks.py)."""

from __future__ import annotations

import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import grpc
import httpx
from renove.conexoes.v1 import crm_events_service_pb2_grpc as epb_grpc
from renove.conexoes.v1 import email_service_pb2_grpc as mpb_grpc
from renove.conexoes.v1 import google_calendar_service_pb2_grpc as gpb_grpc
from renove.conexoes.v1 import instagram_service_pb2_grpc as ipb_grpc
from renove.conexoes.v1 import whatsapp_service_pb2_grpc as wpb_grpc

from bench.payloads import Signed, WahaTarget, inbound_message, instagram_dm, leadgen
from bench.scenarios.calendar import PUSH_PATH
from bench.scenarios.calendar import _headers as push_headers
from bench.stack import Stack
from server.auth.caller import Role
from server.providers.meta_user_data import hash_value
from soak import acks, found
from soak.found import Found
from soak.outbound import send_email, send_instagram, write_calendar
from soak.setup import Calendar
from soak.traffic import Item, Launch, Sent, Stream, post_webhook, publish_pipeline_event
from soak.traffic import send_whatsapp as send_whatsapp_message


@dataclass(frozen=True)
class World:
    """What the setup made: ids the items refer to."""

    run: str
    target: WahaTarget
    page_id: str
    form_id: str
    lead_ids: list[str]
    account_id: str
    pixel: str
    audience: str  # Meta's id of the audience every MQL joins
    customers: list[str]  # Instagram senders with a conversation
    calendar: Calendar
    meetings: list[str]  # meetings waiting for their Google event (calendar_out)


def build(base: Stack, world: World, channel: grpc.aio.Channel, http: httpx.AsyncClient,
          rates: dict[str, float], retry_until: float) -> list[Stream]:  # fmt: skip
    run = world.run
    ig_secret = base.server_env["CONEXOES_INSTAGRAM_APP_SECRET"]
    meta_secret = base.server_env["CONEXOES_META_APP_SECRET"]
    member, admin = base.md(Role.MEMBER), base.md(Role.ADMIN)
    whatsapp = wpb_grpc.WhatsAppServiceStub(channel)
    events = epb_grpc.CrmEventsServiceStub(channel)
    mail = mpb_grpc.EmailServiceStub(channel)
    instagram = ipb_grpc.InstagramServiceStub(channel)
    calendar = gpb_grpc.GoogleCalendarServiceStub(channel)
    area = zlib.crc32(run.encode()) % 1000  # a Belo Horizonte mobile per run and item
    now_ms = int(time.time() * 1000)
    cal = world.calendar

    def webhook(path: str, build: Callable[[int], Signed]) -> Launch:
        async def launch(index: int, item: Item) -> None:
            await post_webhook(http, base.http_url + path, build(index), item, retry_until)

        return launch

    async def whatsapp_out(index: int, item: Item) -> None:
        to = f"+55319{area:03d}{index % 100_000:05d}"
        text = f"{item.key} Ola, segue a proposta"
        await send_whatsapp_message(whatsapp, member, to, text, item, retry_until)

    async def calendar_push(index: int, item: Item) -> None:
        # The owner renames the event in Google Calendar; Google posts its (empty) push.
        url = f"{base.sandbox_url}/google/_control/calendars/{cal.calendar_id}/events"
        renamed = await http.post(
            f"{url}/{cal.push_events[index]}", json={"summary": item.key, "push": False}
        )
        renamed.raise_for_status()
        signed = Signed(b"", push_headers(*cal.channel, index + 2))
        await post_webhook(http, base.http_url + PUSH_PATH, signed, item, retry_until)

    def leadgen_body(i: int) -> Signed:
        return leadgen(meta_secret, world.page_id, world.form_id, world.lead_ids[i],
                       int(time.time()))  # fmt: skip

    return [
        Stream("whatsapp_in", rates["whatsapp_in"],
               webhook(f"/webhooks/waha/{base.tenant}",
                       lambda i: inbound_message(world.target, run, i, now_ms)),
               lambda i: (f"bench:{run}:{i}", f"evt_{run}_{i:08d}")),
        Stream("instagram_in", rates["instagram_in"],
               webhook("/webhooks/instagram",
                       lambda i: instagram_dm(ig_secret, world.account_id, run, i, now_ms)),
               lambda i: (f"bench:{run}:{i}", f"aWdfbench{run}{i:09d}")),
        Stream("leadgen_in", rates["leadgen_in"], webhook("/webhooks/meta-leads", leadgen_body),
               lambda i: (world.lead_ids[i], world.lead_ids[i]), limit=len(world.lead_ids)),
        Stream("calendar_in", rates["calendar_in"], calendar_push,
               lambda i: (f"soakpush:{run}:{i}", ""), limit=len(cal.push_events)),
        Stream("whatsapp_out", rates["whatsapp_out"], whatsapp_out,
               lambda i: (f"soakout:{run}:{i}", "")),
        Stream("instagram_out", rates["instagram_out"],
               lambda i, item: send_instagram(instagram, admin,
                                              world.customers[i % len(world.customers)],
                                              item, retry_until),
               lambda i: (f"soakig:{run}:{i}", "")),
        Stream("capi_out", rates["capi_out"],
               lambda i, item: publish_pipeline_event(events, admin, i, item, retry_until),
               lambda i: (f"{run}-capi-{i}", f"{run}-capi-{i}")),
        Stream("email_out", rates["email_out"],
               lambda i, item: send_email(mail, member, item, retry_until),
               lambda i: (f"soakmail:{run}:{i}", "")),
        Stream("calendar_out", rates["calendar_out"],
               lambda i, item: write_calendar(calendar, member, world.meetings[i], item,
                                              retry_until),
               lambda i: (f"soakcal:{run}:{i}", ""), limit=len(world.meetings)),
    ]  # fmt: skip


AUDIENCE = "audience_out"


def audience_members(sent: Sent) -> list[Item]:
    """Every MQL the CAPI stream published also joins the audience (its trigger is MQL): one
    audience item per CAPI item, keyed by the hashed e-mail Meta receives."""
    members = []
    for capi in sent.of("capi_out"):
        member = Item(AUDIENCE, hash_value("em", f"{capi.key}@soak.example"), capi.key,
                      capi.started, capi.wall, capi.accepted, capi.refused)  # fmt: skip
        members.append(member)
    return members


def reader(
    world: World,
    sent: Sent,
    http: httpx.AsyncClient,
    sandbox_url: str,
    mailbox: Callable[[], dict[str, list[float]]],
) -> Callable[[asyncpg.Connection], Awaitable[dict[str, Found]]]:
    """What the service did, per stream, in the table's order."""
    run = world.run

    async def read(conn: asyncpg.Connection) -> dict[str, Found]:
        pushes = [i.key for i in sent.of("calendar_in")]
        acked = [i.key for i in sent.of(acks.STREAM)]
        return {
            "whatsapp_in": await found.stored_conversas(conn, "whatsapp", run),
            acks.STREAM: await found.acked(conn, acked, acks.READ),
            "instagram_in": await found.stored_conversas(conn, "instagram", run),
            "leadgen_in": await found.stored_leads(conn, [i.key for i in sent.of("leadgen_in")]),
            "calendar_in": await found.renamed_meetings(conn, pushes),
            "whatsapp_out": await found.waha_sent(http, sandbox_url, f"soakout:{run}:"),
            "instagram_out": await found.instagram_sent(http, sandbox_url, f"soakig:{run}:"),
            "capi_out": await found.pixel_events(http, sandbox_url, world.pixel),
            AUDIENCE: await found.audience_additions(http, sandbox_url, world.audience),
            "email_out": mailbox(),
            "calendar_out": await found.calendar_events(
                http, sandbox_url, world.calendar.calendar_id, f"soakcal:{run}:"
            ),
        }

    return read
