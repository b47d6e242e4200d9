"""One soak run: start the system, connect WhatsApp, Lead Ads and Instagram, run the load while
the faults play, let the queue drain, reconcile."""

from __future__ import annotations

import asyncio
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
from renove.conexoes.v1 import conversions_service_pb2 as cpb
from renove.conexoes.v1 import conversions_service_pb2_grpc as cpb_grpc
from renove.conexoes.v1 import crm_events_service_pb2_grpc as epb_grpc
from renove.conexoes.v1 import whatsapp_service_pb2_grpc as wpb_grpc

from bench.payloads import Signed, inbound_message, instagram_dm, leadgen
from bench.procs import Cores
from bench.profile import QUICK as BENCH_QUICK
from bench.report import Report
from bench.scenarios.context import Context
from bench.scenarios.ingest import waha_target
from bench.scenarios.results import connect_instagram, connect_meta
from bench.stack import describe_machine, start_stack
from server.auth.caller import Role
from soak.profile import Profile
from soak.reconcile import Reconciliation, open_jobs, reconcile
from soak.stack import SoakStack, grow
from soak.traffic import (
    Item,
    Launch,
    Sent,
    Stream,
    drive,
    post_webhook,
    publish_pipeline_event,
    send_whatsapp,
)

# How long after the load a sender keeps retrying: past the 120 s after which the server takes
# over a request id whose first attempt died with its process or its database connection
# (server/idempotency.py), so a client that retries like the CRM's does gets its answer.
RETRY_AFTER_LOAD_S = 150.0


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
            await ctx.connect_member()
            page_id, form_id = await connect_meta(ctx)
            account_id = await connect_instagram(ctx)
            pixel = await _capi_pixel(ctx)
            run = f"sk{uuid.uuid4().hex[:6]}"
            rates = profile.rates
            burst_share = profile.burst_seconds / profile.burst_every * 10
            lead_count = int(rates["leadgen_in"] * profile.seconds * (1 + burst_share)) + 5
            lead_ids = await _make_leads(ctx, form_id, lead_count, run)
            soak.note(
                f"run {run}: WhatsApp, Lead Ads and Instagram connected; {lead_count} leads waiting"
            )
            sent = Sent()
            target = waha_target(ctx)
            ig_secret = base.server_env["CONEXOES_INSTAGRAM_APP_SECRET"]
            meta_secret = base.server_env["CONEXOES_META_APP_SECRET"]
            stub = wpb_grpc.WhatsAppServiceStub(channel)
            member_md = base.md(Role.MEMBER)
            events = epb_grpc.CrmEventsServiceStub(channel)
            admin_md = base.md(Role.ADMIN)
            began = time.monotonic()
            retry_until = began + profile.seconds + RETRY_AFTER_LOAD_S
            area = zlib.crc32(run.encode()) % 1000  # a Belo Horizonte mobile per run and item

            def webhook(path: str, build: Callable[[int], Signed]) -> Launch:
                async def launch(index: int, item: Item) -> None:
                    await post_webhook(http, base.http_url + path, build(index), item, retry_until)

                return launch

            async def out(index: int, item: Item) -> None:
                text = f"soakout:{run}:{index} Ola, segue a proposta"
                to = f"+55319{area:03d}{index % 100_000:05d}"
                await send_whatsapp(stub, member_md, to, text, item, retry_until)

            now_ms = int(time.time() * 1000)
            streams = [
                Stream("whatsapp_in", rates["whatsapp_in"],
                       webhook(f"/webhooks/waha/{base.tenant}",
                               lambda i: inbound_message(target, run, i, now_ms)),
                       lambda i: (f"bench:{run}:{i}", f"evt_{run}_{i:08d}")),
                Stream("instagram_in", rates["instagram_in"],
                       webhook("/webhooks/instagram",
                               lambda i: instagram_dm(ig_secret, account_id, run, i, now_ms)),
                       lambda i: (f"bench:{run}:{i}", f"aWdfbench{run}{i:09d}")),
                Stream("leadgen_in", rates["leadgen_in"],
                       webhook("/webhooks/meta-leads",
                               lambda i: leadgen(meta_secret, page_id, form_id, lead_ids[i],
                                                 int(time.time()))),
                       lambda i: (lead_ids[i], lead_ids[i]), limit=len(lead_ids)),
                Stream("whatsapp_out", rates["whatsapp_out"], out,
                       lambda i: (f"soakout:{run}:{i}", "")),
                Stream("capi_out", rates["capi_out"],
                       lambda i, item: publish_pipeline_event(events, admin_md, i, item,
                                                              retry_until),
                       lambda i: (f"{run}-capi-{i}", f"{run}-capi-{i}")),
            ]  # fmt: skip
            await asyncio.gather(
                drive(
                    streams,
                    profile.seconds,
                    profile.burst_every,
                    profile.burst_seconds,
                    sent,
                    began,
                ),
                _faults(soak, profile, began, http),
            )
            soak.note(f"load done: {len(sent.items)} items; waiting for the queue to drain")
            await _drain(soak, profile)
            lo, hi = profile.fault_window
            result = await reconcile(
                base.dsn, http, base.sandbox_url, run, sent, (began + lo, began + hi), pixel
            )
            facts: dict[str, object] = {"machine": machine, "cores": cores.how, "run": run}
            return result, facts
    finally:
        await base.close()
