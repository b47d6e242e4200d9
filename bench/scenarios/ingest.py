"""Row 1: WAHA `message` webhooks through the sidecar (HMAC verified, session resolved, inbox
row + processing job committed) until the 200, closed loop at concurrency 64.

Baseline: a bare Starlette endpoint (uvicorn, uvloop, httptools) forwarding the same body as a
bare grpc.aio unary call that does one asyncpg INSERT; same generator, same bytes.

No worker runs during this row, so ingest is measured alone; the jobs it enqueued are then
removed (they would otherwise be processed in later rows and disturb them). Before that, the
row checks that every 200 left its job behind.
"""

from __future__ import annotations

import asyncpg

from bench.cpu import per_item_ms
from bench.payloads import WahaTarget
from bench.report import Figure
from bench.scenarios.context import MEMBER_PHONE, Context, config_arg
from bench.stats import median_of

ROW = "1. webhook ingest"


def waha_target(ctx: Context) -> WahaTarget:
    stack = ctx.stack
    return WahaTarget(
        session=ctx.session_name,
        tenant_id=str(stack.tenant),
        user_id=stack.demo.member_id,
        own_phone=MEMBER_PHONE,
        hmac_key=stack.server_env["CONEXOES_WAHA_WEBHOOK_HMAC_KEY"],
    )


async def _jobs(dsn: str, run: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM webhook_inbox WHERE provider_event_id LIKE $1",
            f"evt_{run}_%",
        )
        return count
    finally:
        await conn.close()


async def _drop_backlog(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        status = await conn.execute(
            "DELETE FROM eventos_pendentes WHERE operacao = 'waha_event' AND status = 'pending'"
        )
        return int(status.split()[-1])
    finally:
        await conn.close()


async def run(ctx: Context) -> None:
    stack, profile = ctx.stack, ctx.profile
    target = waha_target(ctx)
    path = f"/webhooks/waha/{stack.tenant}"
    common = {
        "path": path,
        "target": target.__dict__,
        "concurrency": profile.ingest_concurrency,
        "duration_s": profile.ingest_seconds,
        "warmup_s": profile.warmup_s,
        # Enough distinct events for ~2,500 requests/s over the whole run.
        "payloads": int(2_500 * (profile.ingest_seconds + profile.warmup_s)),
    }
    grpc_addr, http_addr = ctx.baseline_address(), ctx.baseline_address()
    timeout = profile.ingest_seconds + profile.warmup_s + 60
    ours, bare, persisted = [], [], []
    insert_args = ["insert", config_arg(address=grpc_addr, dsn=stack.dsn)]
    forward_args = [config_arg(address=http_addr, grpc_target=grpc_addr)]
    async with (
        ctx.baseline("baseline-insert", "grpc_servers", insert_args, grpc_addr),
        ctx.baseline("baseline-forward", "http_forward", forward_args, http_addr),
    ):
        for index in range(profile.runs):
            run_id = f"in{index}{ctx.report.started:.0f}"[-10:]
            cpu_before = stack.cpu()
            result = await ctx.load(
                "bench.load.ingest",
                {**common, "url": stack.http_url, "run": run_id},
                timeout,
            )
            result["cpu_ms_per_request"] = per_item_ms(cpu_before, stack.cpu(), result["sent"])
            ours.append(result)
            persisted.append({"accepted": result["statuses"].get("200", 0),
                              "inbox_rows": await _jobs(stack.dsn, run_id)})  # fmt: skip
            bare.append(
                await ctx.load(
                    "bench.load.ingest",
                    {**common, "url": f"http://{http_addr}", "run": run_id},
                    timeout,
                )
            )
    dropped = await _drop_backlog(stack.dsn)
    ctx.report.raw["ingest"] = {"ours": ours, "baseline": bare, "persisted": persisted,
                                "backlog_dropped": dropped}  # fmt: skip
    for result in (*ours, *bare):
        if set(result["statuses"]) - {"200"} or result["exhausted"]:
            ctx.report.notes.append(f"{ROW}: statuses {result['statuses']}, "
                                    f"ran out of payloads: {result['exhausted']}")  # fmt: skip
    ctx.report.notes.append(f"{ROW}: CPU ms per webhook on the server core (last run): "
                            f"{ours[-1]['cpu_ms_per_request']}")  # fmt: skip
    label = "Starlette -> grpc.aio -> 1 INSERT"
    runs = len(ours)
    note = f"concurrency {profile.ingest_concurrency}"
    ctx.report.add(Figure(ROW, "throughput (req/s)", median_of(ours, "rps"),
                          median_of(bare, "rps"), "higher", runs, label, note))  # fmt: skip
    for key, name in (("p50_ms", "p50 (ms)"), ("p99_ms", "p99 (ms)")):
        ctx.report.add(
            Figure(ROW, name, median_of(ours, key), median_of(bare, key), "lower", runs, label)
        )
