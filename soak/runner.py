"""One soak run: start the system, connect WhatsApp, Lead Ads and Instagram, run the load while
the faults play, let the queue drain, reconcile."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import grpc
import httpx
from renove.conexoes.v1 import conversions_service_pb2 as cpb
from renove.conexoes.v1 import conversions_service_pb2_grpc as cpb_grpc

from bench.procs import Cores
from bench.profile import QUICK as BENCH_QUICK
from bench.report import Report
from bench.scenarios.context import Context
from bench.scenarios.ingest import waha_target
from bench.scenarios.results import connect_instagram, connect_meta
from bench.stack import describe_machine, free_port, start_stack
from server.auth.caller import Role
from soak import acks
from soak.mail_sink import MailSink
from soak.profile import Profile
from soak.reconcile import Reconciliation, open_jobs, reconcile
from soak.setup import (
    connect_calendar,
    connect_email,
    instagram_customers,
    mql_audience,
    new_meetings,
)
from soak.stack import SoakStack, grow
from soak.streams import World, audience_members, build, reader
from soak.traffic import Sent, drive

# How long after the load a sender keeps retrying, as providers and the CRM do: an item that met
# the last fault gets its answer (a request id whose first attempt died with its server is
# taken over by the next repeat at once, server/idempotency.py).
RETRY_AFTER_LOAD_S = 90.0
INSTAGRAM_CUSTOMERS = 20


async def _make_leads(ctx: Context, form_id: str, count: int, run: str) -> list[str]:
    ids = []
    for index in range(count):
        answers = {"full_name": f"Soak {run} {index}", "email": f"{run}.{index}@soak.example",
                   "phone_number": f"+55 31 9{index % 10**8:08d}"}  # fmt: skip
        made = await ctx.http.post(
            f"{ctx.graph_url}/_control/leads",
            json={"form_id": form_id, "answers": answers, "send_webhook": False},
        )
        made.raise_for_status()
        ids.append(str(made.json()["leadgen_id"]))
    return ids


async def _capi_pixel(ctx: Context) -> str:
    """A pixel of the tenant's own in the Graph fake, and an active CAPI configuration."""
    made = await ctx.http.post(f"{ctx.graph_url}/_control/capi/pixels")
    made.raise_for_status()
    pixel, token = str(made.json()["pixel_id"]), str(made.json()["access_token"])
    await cpb_grpc.ConversionsServiceStub(ctx.channel).SaveCapiConfig(
        cpb.SaveCapiConfigRequest(pixel_id=pixel, access_token=token, ativo=True),
        metadata=ctx.stack.md(Role.ADMIN),
    )
    return pixel


async def _faults(soak: SoakStack, profile: Profile, began: float, http: httpx.AsyncClient) -> None:
    async def at(offset: float) -> None:
        await asyncio.sleep(max(0.0, began + offset - time.monotonic()))

    async def chaos() -> None:
        await at(profile.chaos_at)
        plan = {"fail_rate": 0.30, "timeout_rate": 0.05, "seconds": profile.chaos_seconds,
                "hang_seconds": profile.hang_seconds, "seed": 18}  # fmt: skip
        (await http.post(f"{soak.base.sandbox_url}/_control/chaos", json=plan)).raise_for_status()
        soak.note(f"sandbox fails 30 % and hangs 5 % of calls for {profile.chaos_seconds:.0f}s")

    async def server() -> None:
        await at(profile.kill_server_at)
        await soak.kill_and_restart_server("server-a", profile.down_seconds)

    async def worker() -> None:
        await at(profile.kill_worker_at)
        await soak.kill_and_restart_worker("worker-1", profile.down_seconds)

    async def postgres() -> None:
        await at(profile.restart_postgres_at)
        await soak.restart_postgres()

    await asyncio.gather(chaos(), server(), worker(), postgres())


async def _drain(soak: SoakStack, profile: Profile) -> None:
    deadline = time.monotonic() + profile.drain_seconds
    while time.monotonic() < deadline:
        if await open_jobs(soak.base.dsn) == 0:
            soak.note("queue drained")
            return
        await asyncio.sleep(1.0)
    soak.note(f"queue not drained within {profile.drain_seconds:.0f}s; reconciling anyway")


async def run_soak(
    profile: Profile, data_dir: Path, server_module: list[str]
) -> tuple[Reconciliation, dict[str, object]]:
    cores = Cores.detect()
    machine = describe_machine()
    base = await start_stack(cores, data_dir)
    sink = MailSink(base.smtp_certs, free_port())
    sink.start()
    soak: SoakStack | None = None
    try:
        soak = await grow(base, server_module)
        async with (
            httpx.AsyncClient(timeout=30) as http,
            grpc.aio.insecure_channel(
                soak.grpc_target, options=[("grpc.lb_policy_name", "round_robin")]
            ) as channel,
        ):
            ctx = Context(
                base, BENCH_QUICK, Report(profile.name, machine, cores.how), http, channel
            )
            world = await _prepare(ctx, soak, profile, sink)
            sent = Sent()
            began = time.monotonic()
            retry_until = began + profile.seconds + RETRY_AFTER_LOAD_S
            streams = build(base, world, channel, http, profile.rates, retry_until)
            load_over = lambda: time.monotonic() - began >= profile.seconds  # noqa: E731
            await asyncio.gather(
                drive(
                    streams,
                    profile.seconds,
                    profile.burst_every,
                    profile.burst_seconds,
                    sent,
                    began,
                ),
                acks.follow(
                    http,
                    base.sandbox_url,
                    f"{base.http_url}/webhooks/waha/{base.tenant}",
                    world.target,
                    f"soakout:{world.run}:",
                    sent,
                    load_over,
                    retry_until,
                ),
                _faults(soak, profile, began, http),
            )
            sent.items.extend(audience_members(sent))
            soak.note(f"load done: {len(sent.items)} items; waiting for the queue to drain")
            await _drain(soak, profile)
            lo, hi = profile.fault_window
            result = await reconcile(
                base.dsn, http, base.sandbox_url, sent, (began + lo, began + hi),
                reader(world, sent, http, base.sandbox_url, sink.arrivals),
            )  # fmt: skip
            facts: dict[str, object] = {"machine": machine, "cores": cores.how, "run": world.run}
            return result, facts
    finally:
        sink.stop()
        await base.close()
        if soak is not None:
            await soak.stop_restarted_postgres()


async def _prepare(ctx: Context, soak: SoakStack, profile: Profile, sink: MailSink) -> World:
    """Connects every provider the streams use and makes what their items refer to."""
    base = ctx.stack
    await ctx.connect_member()
    page_id, form_id = await connect_meta(ctx)
    account_id = await connect_instagram(ctx)
    pixel = await _capi_pixel(ctx)
    run = f"sk{uuid.uuid4().hex[:6]}"
    audience = await mql_audience(ctx, run)
    lead_ids = await _make_leads(ctx, form_id, profile.most("leadgen_in"), run)
    await connect_email(ctx, sink)
    calendar = await connect_calendar(ctx, profile.most("calendar_in"), run)
    meetings = await new_meetings(ctx, profile.most("calendar_out"), f"soakcal:{run}")
    ig_secret = base.server_env["CONEXOES_INSTAGRAM_APP_SECRET"]
    customers = await instagram_customers(ctx, account_id, ig_secret, INSTAGRAM_CUSTOMERS, run)
    soak.note(
        f"run {run}: WhatsApp, Lead Ads, Instagram, CAPI, an audience, SMTP and Google Calendar"
        " connected;"
        f" {len(lead_ids)} leads, {len(calendar.push_events)} events and {len(meetings)}"
        " meetings waiting"
    )
    return World(run, waha_target(ctx), page_id, form_id, lead_ids, account_id, pixel,
                 audience, customers, calendar, meetings)  # fmt: skip
