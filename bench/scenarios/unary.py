"""Row 3: unary GetWhatsAppStatus (auth interceptor, permission check, one database read,
protobuf) against a bare grpc.aio echo of the same reply bytes.

Both servers get the same request bytes and the same bearer metadata from the same closed-loop
generator; the echo answers our captured reply, so the wire carries the same bytes.
"""

from __future__ import annotations

import base64

from renove.conexoes.v1 import whatsapp_service_pb2 as wpb

from bench.cpu import per_item_ms
from bench.report import Figure
from bench.scenarios.context import Context, config_arg
from bench.stats import median_of
from server.auth.caller import Role

ROW = "3. unary GetWhatsAppStatus"
METHOD = "/renove.conexoes.v1.WhatsAppService/GetWhatsAppStatus"


async def run(ctx: Context) -> None:
    stack, profile = ctx.stack, ctx.profile
    token = stack.token(Role.MEMBER)
    request = wpb.GetWhatsAppStatusRequest().SerializeToString()
    reply = await ctx.whatsapp.GetWhatsAppStatus(
        wpb.GetWhatsAppStatusRequest(), metadata=stack.md(Role.MEMBER)
    )
    common = {
        "request_b64": base64.b64encode(request).decode(),
        "token": token,
        "concurrency": profile.unary_concurrency,
        "channels": 2,
        "duration_s": profile.unary_seconds,
        "warmup_s": profile.warmup_s,
    }
    address = ctx.baseline_address()
    args = [
        "echo",
        config_arg(address=address, reply_b64=base64.b64encode(reply.SerializeToString()).decode()),
    ]
    ours, bare = [], []
    timeout = profile.unary_seconds + profile.warmup_s + 30
    async with ctx.baseline("baseline-echo", "grpc_servers", args, address):
        # Interleaved, so drift on the machine touches both sides alike.
        for _ in range(profile.runs):
            cpu_before = stack.cpu()
            result = await ctx.load(
                "bench.load.grpc_unary",
                {**common, "target": stack.grpc_addr, "method": METHOD},
                timeout,
            )
            # The warm-up is inside the CPU window too: count its calls at the measured rate.
            calls = round(result["rps"] * (result["seconds"] + profile.warmup_s))
            result["cpu_ms_per_call"] = per_item_ms(cpu_before, stack.cpu(), calls)
            ours.append(result)
            bare.append(
                await ctx.load(
                    "bench.load.grpc_unary",
                    {**common, "target": address, "method": "/bench.Bare/Echo"},
                    timeout,
                )
            )
    ctx.report.raw["unary"] = {"ours": ours, "baseline": bare}
    for run_ in ours:
        if run_["errors"]:
            ctx.report.notes.append(f"{ROW}: errors {run_['errors']}")
    label = "bare grpc.aio echo"
    runs = len(ours)
    ctx.report.add(
        Figure(ROW, "throughput (rps)", median_of(ours, "rps"), median_of(bare, "rps"),
               "higher", runs, label, f"concurrency {profile.unary_concurrency}")
    )  # fmt: skip
    ctx.report.notes.append(f"{ROW}: CPU ms per call on the server core (last run): "
                            f"{ours[-1]['cpu_ms_per_call']}")  # fmt: skip
    for key, name in (("p50_ms", "p50 (ms)"), ("p99_ms", "p99 (ms)")):
        ctx.report.add(
            Figure(ROW, name, median_of(ours, key), median_of(bare, key), "lower", runs, label)
        )
