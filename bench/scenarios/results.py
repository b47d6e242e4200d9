"""Row 2: webhook to result under a steady load, with one worker process (concurrency 4).

- WhatsApp: signed `message` webhooks at a steady rate; the result is the MESSAGE_RECEIVED event
  on Connections.WatchEvents (contact found or created, message stored in `conversas`, counters
  moved, NOTIFY). Afterwards the row checks every message is in `conversas`.
- Instagram: signed DM webhooks (a new sender each); the result is the MESSAGE_RECEIVED event
  (contact and pre-opportunity created, the sender's profile asked of the sandbox, message
  stored with its window). Afterwards the row checks every DM is in `conversas`.
- Lead Ads: signed `leadgen` webhooks for leads waiting in the Graph sandbox; the result is the
  LEAD_RECEIVED event (lead fetched from Graph, contact + opportunity created). Afterwards the
  row checks every lead has its opportunity.

Baseline (chosen over row 1's ingest-only latency, which has no "result" to wait for): a bare
insert + notify round trip. The same bodies at the same rate go to bare Starlette -> bare
grpc.aio -> one transaction with INSERT and pg_notify; the latency runs until a LISTENing
asyncpg connection hears the NOTIFY. That is the least any webhook-to-visible-result path does.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import asyncpg
from renove.conexoes.v1 import meta_leads_service_pb2 as mpb
from renove.conexoes.v1 import meta_leads_service_pb2_grpc as mpb_grpc

from bench.cpu import per_item_ms
from bench.payloads import Signed, inbound_message, instagram_dm, instagram_sender, leadgen
from bench.report import Figure
from bench.scenarios.context import Context, config_arg
from bench.scenarios.ingest import waha_target
from bench.stats import median_of
from server.auth.caller import Role

ROW_WA = "2a. WhatsApp message -> event"
ROW_LEAD = "2b. leadgen -> contact + opportunity"
ROW_IG = "2c. Instagram DM -> event"
FIELDS = {"full_name": "nome", "email": "email", "phone_number": "telefone"}


def _requests(signed: list[tuple[str, Signed]]) -> list[dict[str, Any]]:
    return [
        {"key": key, "body_b64": base64.b64encode(s.body).decode(), "headers": s.headers}
        for key, s in signed
    ]


async def connect_meta(ctx: Context) -> tuple[str, str]:
    """Admin connects Meta through the real OAuth flow, selects the seeded page and maps its
    form to the demo pipeline's first stage (owner: the member). Returns (page_id, form_id)."""
    from sandbox.graph.seed import FORM_ID, PAGE_ID

    stack = ctx.stack
    md = stack.md(Role.ADMIN)
    stub = mpb_grpc.MetaLeadsServiceStub(ctx.channel)
    call = stub.GetMetaAuthUrl(mpb.GetMetaAuthUrlRequest(), metadata=md)
    url = await call
    # The state is bound to the browser that got this cookie with the URL.
    cookie = next(str(v) for k, v in await call.initial_metadata() if k == "x-set-cookie")
    dialog = await ctx.http.get(url.oauth.auth_url)
    landed = await ctx.http.get(
        dialog.headers["location"], headers={"cookie": cookie.split(";", 1)[0]}
    )
    if "status=ok" not in landed.headers.get("location", ""):
        raise RuntimeError(f"Meta OAuth did not connect: {landed.headers}")
    await stub.SelectMetaPage(mpb.SelectMetaPageRequest(page_id=PAGE_ID), metadata=md)
    mapping = mpb.LeadFormMapping(
        page_id=PAGE_ID,
        form_id=FORM_ID,
        funil_id=stack.demo.funil_id,
        etapa_destino_id=stack.demo.etapa_ids[0],
        owner_id=stack.demo.member_id,
        mapeamento_campos=FIELDS,
        tags_automaticas=["lead-ads", "bench"],
    )
    await stub.CreateLeadFormMapping(
        mpb.CreateLeadFormMappingRequest(request_id=str(uuid.uuid4()), mapping=mapping),
        metadata=md,
    )
    return PAGE_ID, FORM_ID


async def connect_instagram(ctx: Context) -> str:
    """Admin connects Instagram through Instagram Login, as a browser does (the auth URL from
    the gateway sets the binding cookie the callback needs). Returns the account's user_id."""
    stack = ctx.stack
    answer = await ctx.http.get(
        f"{stack.http_url}/api/v1/conexoes/instagram/auth-url",
        headers={"authorization": f"Bearer {stack.token(Role.ADMIN)}"},
    )
    answer.raise_for_status()
    login = await ctx.http.get(answer.json()["auth_url"])
    landed = await ctx.http.get(login.headers["location"])
    if "status=ok" not in landed.headers.get("location", ""):
        raise RuntimeError(f"Instagram Login did not connect: {landed.headers}")
    world = await ctx.http.get(f"{stack.sandbox_url}/instagram/_control/world")
    return str(world.json()["accounts"][0]["user_id"])


async def _new_leads(ctx: Context, form_id: str, count: int, run: str) -> list[str]:
    ids = []
    for index in range(count):
        answers = {"full_name": f"Lead {run} {index}", "email": f"{run}.{index}@bench.example",
                   "phone_number": f"+55 11 9{index % 10**8:08d}"}  # fmt: skip
        made = await ctx.http.post(
            f"{ctx.graph_url}/_control/leads",
            json={"form_id": form_id, "answers": answers, "send_webhook": False},
        )
        made.raise_for_status()
        ids.append(str(made.json()["leadgen_id"]))
    return ids


async def _verify(dsn: str, run: str, leadgen_ids: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        messages = await conn.fetchval(
            "SELECT count(*) FROM conversas WHERE canal = 'whatsapp' AND conteudo LIKE $1",
            f"bench:{run}:%",
        )
        dms = await conn.fetchval(
            "SELECT count(*) FROM conversas WHERE canal = 'instagram' AND conteudo LIKE $1",
            f"bench:{run}:%",
        )
        leads = await conn.fetchval(
            "SELECT count(*) FROM leads_meta_recebidos l JOIN oportunidades o"
            " ON o.id = l.oportunidade_id WHERE l.leadgen_id = ANY($1::text[])",
            leadgen_ids,
        )
    finally:
        await conn.close()
    return {
        "messages_stored": int(messages),
        "dms_stored": int(dms),
        "leads_with_opportunity": int(leads),
    }


async def run(ctx: Context) -> None:
    stack, profile = ctx.stack, ctx.profile
    page_id, form_id = await connect_meta(ctx)
    account_id = await connect_instagram(ctx)
    ig_secret = stack.server_env["CONEXOES_INSTAGRAM_APP_SECRET"]
    app_secret = stack.server_env["CONEXOES_META_APP_SECRET"]
    target = waha_target(ctx)
    grpc_addr, http_addr = ctx.baseline_address(), ctx.baseline_address()
    insert_args = ["insert", config_arg(address=grpc_addr, dsn=stack.dsn, notify=True)]
    forward_args = [config_arg(address=http_addr, grpc_target=grpc_addr)]
    wa_count = max(2, int(profile.result_rate * profile.result_seconds))
    lead_count = max(2, int(profile.lead_rate * profile.lead_seconds))
    token = stack.token(Role.ADMIN)
    kinds = ("wa", "wa_bare", "ig", "ig_bare", "lead", "lead_bare")
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    checks = []

    async def drive(side: str, kind: str, path: str, rate: float, requests: list[dict[str, Any]],
                    seconds: float) -> dict[str, Any]:  # fmt: skip
        url = stack.http_url if side == "ours" else f"http://{http_addr}"
        config = {"side": side, "kind": kind, "url": url, "path": path, "rate": rate,
                  "drain_s": 30.0, "requests": requests, "target": stack.grpc_addr,
                  "token": token, "dsn": stack.dsn}  # fmt: skip
        cpu_before = stack.cpu() if side == "ours" else {}
        result = await ctx.load("bench.load.results", config, seconds + 90)
        if side == "ours":
            # Every server-side process from the first webhook until the last result was seen
            # (the worker included), per webhook sent.
            result["cpu_ms_per_item"] = per_item_ms(cpu_before, stack.cpu(), result["sent"])
        return result

    async with (
        ctx.baseline("baseline-insert-notify", "grpc_servers", insert_args, grpc_addr),
        ctx.baseline("baseline-forward", "http_forward", forward_args, http_addr),
    ):
        for index in range(profile.runs):
            run_id = f"rs{index}{time.time():.0f}"[-10:]
            now_ms = int(time.time() * 1000)
            wa = _requests([(f"bench:{run_id}:{i}", inbound_message(target, run_id, i, now_ms))
                            for i in range(wa_count)])  # fmt: skip
            wa_path = f"/webhooks/waha/{stack.tenant}"
            secs = profile.result_seconds
            out["wa"].append(
                await drive("ours", "whatsapp", wa_path, profile.result_rate, wa, secs)
            )
            out["wa_bare"].append(
                await drive("bare", "whatsapp", wa_path, profile.result_rate, wa, secs)
            )
            dms = _requests(
                [
                    (f"bench:{run_id}:{i}", instagram_dm(ig_secret, account_id, run_id, i, now_ms))
                    for i in range(wa_count)
                ]
            )
            # The senders wrote to the account: the sandbox serves their profiles, as Instagram
            # does, so ours fetches each new contact's profile as in production.
            known = await ctx.http.post(
                f"{stack.sandbox_url}/instagram/_control/customers",
                json={
                    "account_id": account_id,
                    "igsids": [instagram_sender(run_id, i) for i in range(wa_count)],
                },
            )
            known.raise_for_status()
            ig_path = "/webhooks/instagram"
            out["ig"].append(
                await drive("ours", "instagram", ig_path, profile.result_rate, dms, secs)
            )
            out["ig_bare"].append(
                await drive("bare", "instagram", ig_path, profile.result_rate, dms, secs)
            )
            ids = await _new_leads(ctx, form_id, lead_count, run_id)
            now = int(time.time())
            leads = _requests([(i, leadgen(app_secret, page_id, form_id, i, now)) for i in ids])
            secs = profile.lead_seconds
            path = "/webhooks/meta-leads"
            out["lead"].append(await drive("ours", "leads", path, profile.lead_rate, leads, secs))
            out["lead_bare"].append(
                await drive("bare", "leads", path, profile.lead_rate, leads, secs)
            )
            checks.append({"run": run_id, "sent": wa_count, "leads": lead_count,
                           **await _verify(stack.dsn, run_id, ids)})  # fmt: skip
    ctx.report.raw["webhook_to_result"] = {**out, "checks": checks}
    for check in checks:
        if (
            check["messages_stored"] < check["sent"]
            or check["dms_stored"] < check["sent"]
            or check["leads_with_opportunity"] < check["leads"]
        ):
            ctx.report.notes.append(f"row 2: not every result was stored: {check}")
    for name, result in out.items():
        for r in result:
            if r["observed"] < r["sent"]:
                ctx.report.notes.append(
                    f"row 2 {name}: observed {r['observed']} of {r['sent']} ({r['statuses']})"
                )
    label = "Starlette -> grpc.aio -> INSERT+NOTIFY -> LISTEN"
    for row, ours, bare, rate in (
        (ROW_WA, out["wa"], out["wa_bare"], profile.result_rate),
        (ROW_IG, out["ig"], out["ig_bare"], profile.result_rate),
        (ROW_LEAD, out["lead"], out["lead_bare"], profile.lead_rate),
    ):
        note = f"steady {rate:g}/s"
        ctx.report.notes.append(f"{row}: CPU ms per webhook on the server core, webhook to "
                                f"result (last run): {ours[-1]['cpu_ms_per_item']}")  # fmt: skip
        for key, name in (("p50_ms", "p50 (ms)"), ("p99_ms", "p99 (ms)")):
            ctx.report.add(Figure(row, name, median_of(ours, key), median_of(bare, key),
                                  "lower", len(ours), label, note))  # fmt: skip
