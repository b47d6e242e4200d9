"""Orchestration: start the stack, run each row, always stop every process, write the report.

Rows run in an order that keeps them from disturbing each other: the unary and ingest rows
first with no worker running (so nothing else competes for the server core), then the rows
that need jobs processed with one worker process, and the queue row last with its own workers.
"""

from __future__ import annotations

import asyncio
import importlib
import signal
import time
import traceback
from pathlib import Path

import grpc
import httpx

from bench.procs import Cores
from bench.profile import Profile
from bench.report import Report
from bench.scenarios.context import Context
from bench.stack import describe_machine, start_stack

# key -> (module, title, needs the default worker process)
ROWS: dict[str, tuple[str, str, bool]] = {
    "3": ("bench.scenarios.unary", "unary GetWhatsAppStatus", False),
    "1": ("bench.scenarios.ingest", "webhook ingest", False),
    "5": ("bench.scenarios.latency", "QR code and OAuth callback", True),
    "2": ("bench.scenarios.results", "webhook to result", True),
    "4": ("bench.scenarios.streams", "status streams", True),
    "6": ("bench.scenarios.queue", "queue drain", False),
    "7": ("bench.scenarios.calendar", "Calendar push to meeting", True),
    "8": ("bench.scenarios.email", "e-mail send (SMTP)", False),
    "9": ("bench.scenarios.feed", "change feed", False),
    "10": ("bench.scenarios.capi", "CAPI event to Meta", True),
    "11": ("bench.scenarios.observability", "observability cost", False),
}
DEFAULT_WORKER_CONCURRENCY = 4


def _say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


async def run_bench(profile: Profile, rows: list[str], data_dir: Path) -> Report:
    cores = Cores.detect()
    report = Report(profile.name, describe_machine(), cores.how)
    _say(f"{cores.how}")
    _say(f"starting PostgreSQL, sandbox, server and sidecar (data in {data_dir})")
    stack = await start_stack(cores, data_dir)
    try:
        async with (
            httpx.AsyncClient(timeout=30) as http,
            grpc.aio.insecure_channel(stack.grpc_addr) as channel,
        ):
            ctx = Context(stack, profile, report, http, channel)
            await stack.start_worker(DEFAULT_WORKER_CONCURRENCY)
            await ctx.connect_member()
            for key in [k for k in ROWS if k in rows]:
                module, title, needs_worker = ROWS[key]
                if needs_worker and "worker" not in stack.procs:
                    await stack.start_worker(DEFAULT_WORKER_CONCURRENCY)
                elif not needs_worker:
                    await stack.stop_worker()
                _say(f"row {key}: {title}")
                began = time.monotonic()
                try:
                    await importlib.import_module(module).run(ctx)
                except Exception as exc:
                    report.fail(f"row {key} ({title})", f"{type(exc).__name__}: {exc}")
                    traceback.print_exc()
                _say(f"row {key} done in {time.monotonic() - began:.0f}s")
    finally:
        _say("stopping every process")
        await stack.close()
    return report


async def main_async(profile: Profile, rows: list[str], data_dir: Path) -> Report:
    # SIGTERM behaves like Ctrl-C: the run is cancelled and the finally blocks stop everything.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run_bench(profile, rows, data_dir)
