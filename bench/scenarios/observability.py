"""Row 11: what metrics and logging cost on the hot paths.

Two copies of the server and sidecar run side by side on the server core, against the same
database: one as shipped (metrics listener and `/metrics`, JSON logs, access lines for failed
and slow calls, request ids), one with `CONEXOES_OBSERVABILITY=off`. The loads of rows 1
(signed WAHA webhooks through the sidecar, closed loop) and 3 (unary GetWhatsAppStatus) go to
both copies at once, from two generators, and the row compares the CPU each copy's server and
sidecar spent per item. Loading both at once is the tightest interleaving: on a shared machine
whose load swings 2-3x between runs, both copies see the same conditions. A scrape of
`/metrics` costs per scrape, not per item, so it is measured apart (a hundred scrapes of the
observed copy's server and sidecar) and the note spreads it over what a 15-second interval
carries at the measured rate.

PostgreSQL serves both copies at once, so its CPU cannot be told apart and is left out; the
statements per item are the same on both sides (observability adds one aggregate query per
process every `CONEXOES_METRICS_SAMPLE_SECONDS`).

The "baseline" column is the copy with observability off; ours ÷ baseline - 1 is the cost.
"""

from __future__ import annotations

import asyncio
import base64
import statistics
from dataclasses import dataclass
from typing import Any

import httpx
from renove.conexoes.v1 import whatsapp_service_pb2 as wpb

from bench.cpu import per_item_ms, snapshot
from bench.procs import Proc
from bench.report import Figure
from bench.scenarios.context import Context
from bench.scenarios.ingest import _drop_backlog, waha_target
from bench.scenarios.unary import METHOD
from bench.stack import START_TIMEOUT_S, free_port, grpc_serving, http_ok
from server.auth.caller import Role

ROW = "11. observability cost"
SIDES = ("on", "off")
SCRAPES = 100  # CPU time is counted in 10 ms ticks
SCRAPE_INTERVAL_S = 15.0  # Prometheus's usual


@dataclass
class _Side:
    name: str
    server: Proc
    sidecar: Proc
    grpc_addr: str
    http_url: str
    metrics_url: str | None

    def pids(self) -> dict[str, int]:
        return {"server": self.server.pid, "sidecar": self.sidecar.pid}


async def _start_side(ctx: Context, name: str) -> _Side:
    stack = ctx.stack
    grpc_addr = f"127.0.0.1:{free_port()}"
    http_addr = f"127.0.0.1:{free_port()}"
    metrics_addr = f"127.0.0.1:{free_port()}" if name == "on" else ""
    env = {
        **stack.server_env,
        "CONEXOES_GRPC_ADDR": grpc_addr,
        "CONEXOES_HTTP_ADDR": http_addr,
        "CONEXOES_OBSERVABILITY": name,
        "CONEXOES_METRICS_ADDR": metrics_addr,
        "CONEXOES_ACCESS_LOG": "errors",
        "CONEXOES_LOG_FORMAT": "json",
    }
    core = stack.cores.server
    server = await stack.reaper.spawn(f"obs-{name}-server", ["server", "serve"], env, core=core)
    await grpc_serving(grpc_addr, START_TIMEOUT_S)
    sidecar = await stack.reaper.spawn(f"obs-{name}-sidecar", ["webhooks_http"], env, core=core)
    await http_ok(f"http://{http_addr}/readyz")
    metrics_url = f"http://{metrics_addr}/metrics" if metrics_addr else None
    return _Side(name, server, sidecar, grpc_addr, f"http://{http_addr}", metrics_url)


async def _scrape_cost(http: httpx.AsyncClient, side: _Side) -> dict[str, float]:
    """CPU milliseconds one Prometheus scrape of both /metrics costs each process."""
    assert side.metrics_url is not None
    before = _cpu(side)
    for _ in range(SCRAPES):
        for url in (side.metrics_url, f"{side.http_url}/metrics"):
            (await http.get(url)).raise_for_status()
    return per_item_ms(before, _cpu(side), SCRAPES)


def _cpu(side: _Side) -> dict[str, float]:
    return snapshot(side.pids(), None)


async def _ingest(ctx: Context, side: _Side, index: int) -> dict[str, Any]:
    profile = ctx.profile
    config = {
        "url": side.http_url,
        "path": f"/webhooks/waha/{ctx.stack.tenant}",
        "target": waha_target(ctx).__dict__,
        "concurrency": profile.ingest_concurrency,
        "duration_s": profile.ingest_seconds,
        "warmup_s": profile.warmup_s,
        "payloads": int(2_500 * (profile.ingest_seconds + profile.warmup_s)),
        "run": f"ob{side.name}{index}{ctx.report.started:.0f}"[-12:],
    }
    before = _cpu(side)
    result = await ctx.load(
        "bench.load.ingest", config, profile.ingest_seconds + profile.warmup_s + 60
    )
    result["cpu_ms"] = per_item_ms(before, _cpu(side), result["sent"])
    return result


async def _unary(ctx: Context, side: _Side, request_b64: str) -> dict[str, Any]:
    profile = ctx.profile
    config = {
        "target": side.grpc_addr,
        "method": METHOD,
        "request_b64": request_b64,
        "token": ctx.stack.token(Role.MEMBER),
        "concurrency": profile.unary_concurrency,
        "channels": 2,
        "duration_s": profile.unary_seconds,
        "warmup_s": profile.warmup_s,
    }
    before = _cpu(side)
    result = await ctx.load(
        "bench.load.grpc_unary", config, profile.unary_seconds + profile.warmup_s + 30
    )
    # The warm-up is inside the CPU window too: count its calls at the measured rate (row 3).
    calls = round(result["rps"] * (result["seconds"] + profile.warmup_s))
    result["cpu_ms"] = per_item_ms(before, _cpu(side), calls)
    return result


def _median(runs: list[dict[str, Any]], *names: str) -> float:
    return round(statistics.median(sum(r["cpu_ms"].get(n, 0.0) for n in names) for r in runs), 3)


def _percent(on: float, off: float) -> str:
    return f"{(on / off - 1) * 100:+.1f} %" if off else "-"


async def run(ctx: Context) -> None:
    request_b64 = base64.b64encode(wpb.GetWhatsAppStatusRequest().SerializeToString()).decode()
    sides: list[_Side] = []
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        load: {name: [] for name in SIDES} for load in ("ingest", "unary")
    }
    runs = max(ctx.profile.runs, 4) if ctx.profile.runs > 1 else 1
    try:
        for name in SIDES:
            sides.append(await _start_side(ctx, name))
        scrape = await _scrape_cost(ctx.http, sides[0])
        for index in range(runs):
            for side, result in zip(
                sides, await asyncio.gather(*(_ingest(ctx, s, index) for s in sides)), strict=True
            ):
                results["ingest"][side.name].append(result)
            for side, result in zip(
                sides,
                await asyncio.gather(*(_unary(ctx, s, request_b64) for s in sides)),
                strict=True,
            ):
                results["unary"][side.name].append(result)
    finally:
        for side in sides:
            await ctx.stack.reaper.stop(side.sidecar)
            await ctx.stack.reaper.stop(side.server)
        await _drop_backlog(ctx.stack.dsn)
    ctx.report.raw["observability"] = {**results, "scrape_cpu_ms": scrape}
    _report(ctx, results, runs, scrape)


def _report(
    ctx: Context,
    results: dict[str, dict[str, list[dict[str, Any]]]],
    runs: int,
    scrape: dict[str, float],
) -> None:
    label = "same stack, CONEXOES_OBSERVABILITY=off"
    lines = []
    for load, item, processes in (
        ("ingest", "webhook", ("server", "sidecar")),
        ("unary", "call", ("server",)),
    ):
        on, off = results[load]["on"], results[load]["off"]
        for result in (*on, *off):
            bad = {k: v for k, v in result.get("statuses", {}).items() if k != "200"}
            if bad or result.get("errors"):
                ctx.report.notes.append(f"{ROW}: {load} answered {bad or result['errors']}")
        ours, base = _median(on, *processes), _median(off, *processes)
        ctx.report.add(Figure(ROW, f"{load}: CPU ms per {item} ({' + '.join(processes)})",
                              ours, base, "lower", runs, label))  # fmt: skip
        each = [
            f"{p} {_median(on, p)} vs {_median(off, p)} ms "
            f"({_percent(_median(on, p), _median(off, p))})"
            for p in processes
        ]
        # Scrapes cost per scrape, not per item: spread over what one interval carries.
        rate = statistics.median(r["rps"] for r in on)
        per_item = sum(scrape.get(p, 0.0) for p in processes) / max(rate * SCRAPE_INTERVAL_S, 1)
        lines.append(
            f"{load}: {', '.join(each)}; in all {_percent(ours, base)}, with a scrape every "
            f"{SCRAPE_INTERVAL_S:.0f} s at this run's {rate:.0f}/s "
            f"{_percent(ours + per_item, base)}"
        )
    costs = ", ".join(f"{p} {scrape.get(p, 0.0)} ms" for p in ("server", "sidecar"))
    ctx.report.notes.append(f"{ROW}: CPU per item, observability on vs off (medians of "
                            f"{runs} runs, both loaded at once): " + "; ".join(lines)
                            + f". One scrape of /metrics costs {costs} of CPU")  # fmt: skip
