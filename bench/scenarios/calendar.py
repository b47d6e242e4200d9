"""Row 8: a Google Calendar push notification until the CRM meeting is updated, one sample at
a time: the event is renamed in the Google sandbox, then Google's notification (empty body,
X-Goog-* headers) is posted to the sidecar; the latency runs until CALENDAR_EVENT_CHANGED
for the meeting arrives on WatchEvents (ingress check of the channel token, inbox, job,
incremental events.list with the sync token, meeting row, NOTIFY).

Baseline: the same request to the bare Starlette -> grpc.aio -> INSERT+NOTIFY baseline of
row 2, until a LISTENing connection hears it (the bare webhook-to-result round trip).

The bench's public URL is plain HTTP, where Google opens no push channel; the row stores one
for the member's connection the way the room stores a channel it opened, and plays Google's
side of it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import secrets
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import grpc
from google.protobuf import json_format
from renove.conexoes.v1 import connections_service_pb2 as cpb
from renove.conexoes.v1 import connections_service_pb2_grpc as cpb_grpc
from renove.conexoes.v1 import google_calendar_service_pb2 as gpb
from renove.conexoes.v1 import google_calendar_service_pb2_grpc as gpb_grpc

from bench.report import Figure
from bench.scenarios.context import Context, config_arg
from bench.stats import latency_summary, median_of
from server.auth.caller import Role
from server.security.cipher import Keyring, SecretContext

ROW = "7. Calendar push -> meeting updated"
PUSH_PATH = "/webhooks/google-calendar"


async def _connect(ctx: Context) -> str:
    """The demo member connects Google through the gateway and the sandbox's consent."""
    stack = ctx.stack
    answer = await ctx.http.get(
        f"{stack.http_url}/api/v1/conexoes/google/auth-url",
        headers={"authorization": f"Bearer {stack.token(Role.MEMBER)}"},
    )
    answer.raise_for_status()
    cookie = answer.headers["set-cookie"].split(";", 1)[0]
    page = await ctx.http.get(answer.json()["auth_url"])
    link = re.search(r"id='approve' href='([^']+)'", page.text)
    assert link is not None, page.text
    back = await ctx.http.get(link.group(1))
    landed = await ctx.http.get(back.headers["location"], headers={"cookie": cookie})
    assert "status=ok" in landed.headers["location"], landed.headers["location"]
    stub = gpb_grpc.GoogleCalendarServiceStub(ctx.channel)
    status = await stub.GetGoogleConnection(
        gpb.GetGoogleConnectionRequest(), metadata=stack.md(Role.MEMBER)
    )
    return str(status.connection.id)


async def _meeting(ctx: Context, conn: asyncpg.Connection) -> tuple[str, str]:
    """A meeting of the member with its Google event; returns (event id, calendar id)."""
    stack = ctx.stack
    meeting = uuid.uuid4()
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    async with conn.transaction():
        await conn.execute("SELECT set_config('app.current_tenant', $1, true)", str(stack.tenant))
        await conn.execute(
            "INSERT INTO meetings (id, organizacao_id, usuario_id, titulo, inicio, fim)"
            " VALUES ($1, $2, $3, 'Bench', $4, $5)",
            meeting, stack.tenant, uuid.UUID(stack.demo.member_id), start,
            start + dt.timedelta(minutes=30),
        )  # fmt: skip
    stub = gpb_grpc.GoogleCalendarServiceStub(ctx.channel)
    created = await stub.CreateGoogleCalendarEvent(
        gpb.CreateGoogleCalendarEventRequest(
            meeting_id=str(meeting), summary="Bench", add_google_meet=False,
            start=_ts(start), end=_ts(start + dt.timedelta(minutes=30)),
        ),
        metadata=stack.md(Role.MEMBER),
    )  # fmt: skip
    return created.event_id, created.event.calendar_id


def _ts(value: dt.datetime) -> Any:
    from google.protobuf import timestamp_pb2

    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


async def _install_channel(
    ctx: Context, conn: asyncpg.Connection, connection_id: str
) -> tuple[str, str]:
    stack = ctx.stack
    channel_id, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
    keyring = Keyring.parse(stack.server_env["CONEXOES_ENCRYPTION_KEYS"])
    sealed = keyring.encrypt(
        token, SecretContext("conexoes_google", "channel_token_encrypted", stack.tenant)
    )
    async with conn.transaction():
        await conn.execute("SELECT set_config('app.current_tenant', $1, true)", str(stack.tenant))
        await conn.execute(
            "UPDATE conexoes_google SET channel_id = $1, channel_resource_id = 'bench',"
            " channel_token_encrypted = $2, channel_expires_at = now() + interval '1 day'"
            " WHERE id = $3",
            channel_id, sealed, uuid.UUID(connection_id),
        )  # fmt: skip
    return channel_id, token


def _headers(channel_id: str, token: str, number: int) -> dict[str, str]:
    return {
        "X-Goog-Channel-ID": channel_id,
        "X-Goog-Channel-Token": token,
        "X-Goog-Channel-Expiration": "Tue, 19 Nov 2030 01:13:52 GMT",
        "X-Goog-Resource-ID": "bench",
        "X-Goog-Resource-URI": "https://www.googleapis.com/calendar/v3/calendars/x/events",
        "X-Goog-Resource-State": "exists",
        "X-Goog-Message-Number": str(number),
    }


async def _ours(ctx: Context, samples: int, event: tuple[str, str], channel: tuple[str, str],
                first: int) -> dict[str, Any]:  # fmt: skip
    stack = ctx.stack
    event_id, calendar_id = event
    stream = cpb_grpc.ConnectionsServiceStub(ctx.channel).WatchEvents(
        cpb.WatchEventsRequest(
            scope=cpb.OVERVIEW_SCOPE_MINE, kinds=[cpb.EVENT_KIND_CALENDAR_EVENT_CHANGED]
        ),
        metadata=stack.md(Role.MEMBER),
    )
    snapshot = await stream.read()
    assert snapshot.WhichOneof("kind") == "snapshot", snapshot
    latencies: list[float] = []
    control = f"{stack.sandbox_url}/google/_control/calendars/{calendar_id}/events/{event_id}"
    for i in range(samples):
        renamed = await ctx.http.post(
            control, json={"summary": f"Bench {first + i}", "push": False}
        )
        renamed.raise_for_status()
        began = time.perf_counter()
        sent = await ctx.http.post(
            f"{stack.http_url}{PUSH_PATH}", headers=_headers(*channel, first + i), content=b""
        )
        assert sent.status_code == 200, sent.text
        async with asyncio.timeout(30):
            while True:
                message = await stream.read()
                if message is grpc.aio.EOF:
                    raise RuntimeError("event stream ended")
                if message.WhichOneof("kind") != "event":
                    continue
                payload = json_format.MessageToDict(message.event.payload)
                if "titulo" in payload.get("mudancas", []):
                    break
        latencies.append((time.perf_counter() - began) * 1000)
    stream.cancel()
    return {**latency_summary(latencies), "sent": samples, "observed": len(latencies)}


async def _bare(ctx: Context, samples: int, http_addr: str, channel: tuple[str, str],
                first: int) -> dict[str, Any]:  # fmt: skip
    heard: asyncio.Queue[str] = asyncio.Queue()
    conn = await asyncpg.connect(ctx.stack.dsn)
    await conn.add_listener("bench_events", lambda *args: heard.put_nowait(args[-1]))
    latencies: list[float] = []
    try:
        for i in range(samples):
            began = time.perf_counter()
            sent = await ctx.http.post(
                f"http://{http_addr}/webhooks/meta-leads",
                headers=_headers(*channel, first + i),
                content=b"",
            )
            assert sent.status_code == 200, sent.text
            async with asyncio.timeout(30):
                while await heard.get() != sent.text:
                    pass
            latencies.append((time.perf_counter() - began) * 1000)
    finally:
        await conn.close()
    return {**latency_summary(latencies), "sent": samples, "observed": len(latencies)}


async def run(ctx: Context) -> None:
    stack, profile = ctx.stack, ctx.profile
    samples = max(3, profile.oauth_samples * 2)
    connection_id = await _connect(ctx)
    conn = await asyncpg.connect(stack.dsn)
    try:
        event = await _meeting(ctx, conn)
        channel = await _install_channel(ctx, conn, connection_id)
    finally:
        await conn.close()
    grpc_addr, http_addr = ctx.baseline_address(), ctx.baseline_address()
    insert_args = ["insert", config_arg(address=grpc_addr, dsn=stack.dsn, notify=True)]
    forward_args = [config_arg(address=http_addr, grpc_target=grpc_addr)]
    ours, bare = [], []
    number = 2
    async with (
        ctx.baseline("baseline-insert-notify", "grpc_servers", insert_args, grpc_addr),
        ctx.baseline("baseline-forward", "http_forward", forward_args, http_addr),
    ):
        for _ in range(profile.runs):
            ours.append(await _ours(ctx, samples, event, channel, number))
            bare.append(await _bare(ctx, samples, http_addr, channel, number + samples))
            number += 2 * samples
    ctx.report.raw["calendar_push"] = {"ours": ours, "baseline": bare}
    label = "Starlette -> grpc.aio -> INSERT+NOTIFY -> LISTEN"
    note = f"{samples} sequential samples per run; host {urlsplit(stack.http_url).netloc}"
    for key, name in (("p50_ms", "p50 (ms)"), ("p99_ms", "p99 (ms)")):
        ctx.report.add(Figure(ROW, name, median_of(ours, key), median_of(bare, key), "lower",
                              len(ours), label, note))  # fmt: skip
