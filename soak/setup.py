"""Before the load: the connections and the provider-side state the soak's newer streams need
(the member's SMTP mailbox on the soak's aiosmtpd, the member's Google Calendar with a push
channel and meetings waiting for events, Instagram customers who wrote in)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass

import asyncpg
from renove.conexoes.v1 import audiences_service_pb2 as apb
from renove.conexoes.v1 import audiences_service_pb2_grpc as apb_grpc
from renove.conexoes.v1 import email_service_pb2 as epb
from renove.conexoes.v1 import email_service_pb2_grpc as epb_grpc
from renove.conexoes.v1 import google_calendar_service_pb2 as gpb
from renove.conexoes.v1 import google_calendar_service_pb2_grpc as gpb_grpc

from bench.payloads import instagram_dm, instagram_sender
from bench.scenarios.calendar import _connect as connect_google
from bench.scenarios.calendar import _install_channel
from bench.scenarios.context import Context, poll
from sandbox.graph.ads import AD_ACCOUNT_ID
from server.auth.caller import Role
from soak import mail_sink
from soak.mail_sink import MailSink
from soak.outbound import timestamp


@dataclass(frozen=True)
class Calendar:
    calendar_id: str
    channel: tuple[str, str]  # (channel id, token): what Google's pushes carry
    push_events: list[str]  # Google event ids the pushes rename, one per push item


async def connect_email(ctx: Context, sink: MailSink) -> None:
    """The member's manual SMTP connection (SaveSmtpConfig tests it against the sink)."""
    await epb_grpc.EmailServiceStub(ctx.channel).SaveSmtpConfig(
        epb.SaveSmtpConfigRequest(
            email=mail_sink.USER,
            senha=mail_sink.PASSWORD,
            smtp_host=sink.host,
            smtp_port=sink.port,
            nome_remetente="Vendedor Soak",
            request_id=str(uuid.uuid4()),
        ),
        metadata=ctx.stack.md(Role.MEMBER),
    )


async def mql_audience(ctx: Context, run: str) -> str:
    """A customer-list audience the admin fills with every MQL (the CAPI stream's events);
    returns Meta's id of it."""
    made = await apb_grpc.AudiencesServiceStub(ctx.channel).CreateAudience(
        apb.CreateAudienceRequest(
            audience=apb.Audience(
                ad_account_id=AD_ACCOUNT_ID,
                audience_name=f"Soak {run} MQL",
                evento_gatilho=apb.AUDIENCE_TRIGGER_MQL,
            ),
            request_id=str(uuid.uuid4()),
        ),
        metadata=ctx.stack.md(Role.ADMIN),
    )
    return str(made.audience.audience_id)


async def new_meetings(ctx: Context, count: int, title: str) -> list[str]:
    """Meetings of the member as the CRM writes them (its own table), none with an event."""
    stack = ctx.stack
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    ids = [uuid.uuid4() for _ in range(count)]
    conn = await asyncpg.connect(stack.dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                "SELECT set_config('app.current_tenant', $1, true)", str(stack.tenant)
            )
            await conn.executemany(
                "INSERT INTO meetings (id, organizacao_id, usuario_id, titulo, inicio, fim)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                [(m, stack.tenant, uuid.UUID(stack.demo.member_id), title, start,
                  start + dt.timedelta(minutes=30)) for m in ids],
            )  # fmt: skip
    finally:
        await conn.close()
    return [str(m) for m in ids]


async def connect_calendar(ctx: Context, pushes: int, run: str) -> Calendar:
    """Google connected by the member (consent in the sandbox), a push channel stored the way
    the room stores one it opened (the soak's public URL is plain HTTP, where Google opens
    none), and `pushes` meetings with their events for the pushes to rename."""
    connection_id = await connect_google(ctx)
    stub = gpb_grpc.GoogleCalendarServiceStub(ctx.channel)
    md = ctx.stack.md(Role.MEMBER)
    status = await stub.GetGoogleConnection(gpb.GetGoogleConnectionRequest(), metadata=md)
    conn = await asyncpg.connect(ctx.stack.dsn)
    try:
        channel = await _install_channel(ctx, conn, connection_id)
    finally:
        await conn.close()
    meetings = await new_meetings(ctx, pushes, f"soakpre:{run}")
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=3)
    gate = asyncio.Semaphore(8)

    async def create(meeting: str) -> str:
        async with gate:
            made = await stub.CreateGoogleCalendarEvent(
                gpb.CreateGoogleCalendarEventRequest(
                    meeting_id=meeting, summary=f"soakpre:{run}", add_google_meet=False,
                    start=timestamp(start), end=timestamp(start + dt.timedelta(minutes=30)),
                    request_id=str(uuid.uuid4()),
                ),
                metadata=md,
            )  # fmt: skip
            return str(made.event_id)

    events = await asyncio.gather(*(create(m) for m in meetings))
    return Calendar(status.connection.calendar_id, channel, list(events))


async def instagram_customers(
    ctx: Context, account_id: str, app_secret: str, count: int, run: str
) -> list[str]:
    """`count` customers who wrote to the account (their DMs stored, so each has a
    conversation), known to the Instagram fake as inside the messaging window."""
    stack = ctx.stack
    senders = [instagram_sender(f"{run}c", i) for i in range(count)]
    known = await ctx.http.post(
        f"{stack.sandbox_url}/instagram/_control/customers",
        json={"account_id": account_id, "igsids": senders},
    )
    known.raise_for_status()
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    for index in range(count):
        signed = instagram_dm(app_secret, account_id, f"{run}c", index, now_ms)
        answer = await ctx.http.post(
            f"{stack.http_url}/webhooks/instagram", content=signed.body, headers=signed.headers
        )
        answer.raise_for_status()

    async def stored() -> bool | None:
        conn = await asyncpg.connect(stack.dsn)
        try:
            n = await conn.fetchval(
                "SELECT count(*) FROM conversas WHERE canal = 'instagram' AND conteudo LIKE $1",
                f"bench:{run}c:%",
            )
        finally:
            await conn.close()
        return True if n >= count else None

    await poll(stored, within=60)
    return senders
