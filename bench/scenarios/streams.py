"""Row 4: 1,000 and 10,000 concurrent WatchWhatsAppStatus subscribers (the member's own session)
and the latency of one status change reaching all of them; memory per subscriber is the
server's RSS growth (/proc/<pid>/status VmRSS) over the ramp divided by the streams opened.

The client spreads the streams over channels of 1,000 streams each (one HTTP/2 connection per
channel; a proxy or client library capping concurrent streams per connection is then no issue),
and ramps up in batches. Baseline: a bare grpc.aio fan-out server (same server options) with the
same snapshot and change message bytes, read by the same generator.

Each figure is the median over the status changes of one ramp (the ramp itself is the slow
part, so it runs once per subscriber count).
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

from renove.conexoes.v1 import whatsapp_service_pb2 as wpb

from bench.payloads import session_status
from bench.procs import LoadGen, rss_kib
from bench.report import Figure
from bench.scenarios.context import Context, config_arg
from bench.scenarios.ingest import waha_target
from bench.stats import median
from server.auth.caller import Role

ROW = "4. status streams"
PER_CHANNEL = 1_000


async def _measure(ctx: Context, config: dict[str, Any], pid: int) -> dict[str, Any]:
    before = rss_kib(pid)
    timeout = 600.0
    async with LoadGen(ctx.stack.reaper, "bench.load.streams", config, ctx.stack.load_env()) as g:
        ready = (await g.message(timeout))["ready"]
        await asyncio.sleep(1.0)  # let the last batch's allocations settle
        after = rss_kib(pid)
        await g.reply()
        result = await g.result(timeout)
    opened = max(1, ready["opened"])
    return {**result, "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_stream": round((after - before) / opened, 2)}  # fmt: skip


def _figures(ctx: Context, count: int, ours: dict[str, Any], bare: dict[str, Any]) -> None:
    label = "bare grpc.aio fan-out"
    row = f"{ROW} x{count:,}"
    changes = len(ours["changes"])
    for key, name in (("p50_ms", "delivery p50 (ms)"), ("p99_ms", "delivery p99 (ms)")):
        ctx.report.add(Figure(
            row, name, median([c[key] for c in ours["changes"]]),
            median([c[key] for c in bare["changes"]]), "lower", changes, label,
        ))  # fmt: skip
    ctx.report.add(Figure(
        row, "memory per stream (KiB)", ours["kib_per_stream"], bare["kib_per_stream"], "lower",
        1, label, f"ramp {ours['ramp_s']}s vs {bare['ramp_s']}s",
    ))  # fmt: skip
    for side, result in (("ours", ours), ("baseline", bare)):
        if result["opened"] < result["wanted"] or result["failures"]:
            ctx.report.fail(
                f"{row} ({side})",
                f"opened {result['opened']} of {result['wanted']} streams; failures "
                f"{result['failures']}; first: {result['first_failure']}",
            )
        short = [c for c in result["changes"] if c["delivered"] < result["opened"]]
        if short:
            ctx.report.notes.append(f"{row} {side}: some changes reached fewer streams: {short}")


async def run(ctx: Context) -> None:
    stack, profile = ctx.stack, ctx.profile
    status = await ctx.whatsapp.GetWhatsAppStatus(
        wpb.GetWhatsAppStatusRequest(), metadata=stack.md(Role.MEMBER)
    )
    session = status.session
    snapshot = wpb.WatchWhatsAppStatusResponse(
        snapshot=wpb.WhatsAppStatusSnapshot(sessions=[session])
    ).SerializeToString()
    change = wpb.WatchWhatsAppStatusResponse(session=session).SerializeToString()
    request = base64.b64encode(wpb.WatchWhatsAppStatusRequest().SerializeToString()).decode()
    target = waha_target(ctx)
    changes = profile.stream_changes + profile.stream_changes % 2  # end where we began: WORKING
    common = {"request_b64": request, "batch": profile.stream_batch, "per_channel": PER_CHANNEL,
              "changes": changes}  # fmt: skip
    raw: dict[str, Any] = {}
    for count in profile.stream_counts:
        now_ms = int(time.time() * 1000)
        triggers = []
        for index in range(changes):
            signed = session_status(target, ("STARTING", "WORKING")[index % 2], index,
                                    f"{count}{now_ms}", now_ms + index)  # fmt: skip
            triggers.append({"body_b64": base64.b64encode(signed.body).decode(),
                             "headers": signed.headers})  # fmt: skip
        ours = await _measure(ctx, {
            **common, "side": "ours", "target": stack.grpc_addr, "count": count,
            "method": "/renove.conexoes.v1.WhatsAppService/WatchWhatsAppStatus",
            "token": stack.token(Role.MEMBER), "url": stack.http_url,
            "path": f"/webhooks/waha/{stack.tenant}", "triggers": triggers,
        }, stack.server_pid)  # fmt: skip
        address = ctx.baseline_address()
        args = ["fanout", config_arg(address=address,
                                     snapshot_b64=base64.b64encode(snapshot).decode())]  # fmt: skip
        async with ctx.baseline("baseline-fanout", "grpc_servers", args, address) as proc:
            bare = await _measure(ctx, {
                **common, "side": "bare", "target": address, "count": count,
                "method": "/bench.Bare/Subscribe", "token": stack.token(Role.MEMBER),
                "publish_b64": base64.b64encode(change).decode(),
            }, proc.pid)  # fmt: skip
        raw[str(count)] = {"ours": ours, "baseline": bare}
        _figures(ctx, count, ours, bare)
    ctx.report.raw["streams"] = raw
