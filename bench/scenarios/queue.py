"""Row 6: jobs per second drained by one `python -m server worker` process running 1 and 4
jobs at once (CONEXOES_WORKER_CONCURRENCY), with the sandbox answering at once.

N messages are sent through SendWhatsAppMessage (each: a pending message row and its
`whatsapp_send` job) while no worker runs; their jobs are parked in the future, the worker is
started, and once it reports running they are made due in one UPDATE (the queue's trigger
NOTIFYs the worker). The drain ends when every one of them is `completed`: each job read its
message and session, called WAHA's sendText, and stored the result. The WAHA fake's webhooks
about those sends (acks) become jobs too and are drained alongside, as in production.

Each drain starts from a queue holding only its own jobs: the acks of the previous drain's
sends that were still pending when its worker stopped are removed first, so a drain does not
also process the previous one's acks.

The no-op figure drains the same number of jobs of an operation whose handler does nothing
(bench/noop_jobs.py), inserted straight into eventos_pendentes: the queue's and the worker's
own cost per job, with nothing of WhatsApp in it.

Baseline: a bare SKIP LOCKED claim + complete loop in asyncpg with the same concurrency over
the same number of rows, on the same core (no handler, no provider call).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
from renove.conexoes.v1 import whatsapp_service_pb2 as wpb

from bench.cpu import per_item_ms
from bench.noop_jobs import OPERATION
from bench.procs import LoadGen
from bench.report import Figure
from bench.scenarios.context import Context
from bench.stats import median_of
from server.auth.caller import Role
from server.resilience.queue import JOBS_CHANNEL

ROW = "6. queue drain"


async def _enqueue(ctx: Context, count: int) -> list[str]:
    md = ctx.stack.md(Role.MEMBER)
    ids: list[str] = []
    sem = asyncio.Semaphore(16)

    async def send(index: int) -> None:
        async with sem:
            reply = await ctx.whatsapp.SendWhatsAppMessage(
                wpb.SendWhatsAppMessageRequest(
                    to=f"+55119{88000000 + index % 50:08d}",
                    text=f"bench send {index}",
                    request_id=str(uuid.uuid4()),
                ),
                metadata=md,
            )
            ids.append(reply.job_id)

    await asyncio.gather(*(send(i) for i in range(count)))
    return ids


_LEFTOVERS = (
    "DELETE FROM eventos_pendentes WHERE status IN ('pending', 'processing')"
    " AND NOT (id = ANY($1::uuid[]))"
)


_UNFINISHED = (
    "SELECT count(*) FROM eventos_pendentes"
    " WHERE operacao = $1 AND status IN ('pending', 'processing')"
)
_FINISHED = (
    "SELECT count(*) FILTER (WHERE status = 'completed'),"
    " count(*) FILTER (WHERE status = 'failed')"
    " FROM eventos_pendentes WHERE id = ANY($1::uuid[])"
)


async def _noop_jobs(conn: asyncpg.Connection, tenant: uuid.UUID, count: int) -> list[str]:
    rows = await conn.fetch(
        "INSERT INTO eventos_pendentes (organizacao_id, tipo, operacao, destino, payload,"
        " idempotency_key, max_tentativas, proxima_tentativa)"
        " SELECT $1, $2, $2, '', '{}'::jsonb, 'bench-noop:' || gen_random_uuid(), 5,"
        " now() + interval '1 hour' FROM generate_series(1, $3) RETURNING id::text",
        tenant,
        OPERATION,
        count,
    )
    return [row[0] for row in rows]


async def _drain(
    ctx: Context, concurrency: int, count: int, *, noop: bool = False
) -> dict[str, float]:
    stack = ctx.stack
    conn = await asyncpg.connect(stack.dsn)
    try:
        ids = await _noop_jobs(conn, stack.tenant, count) if noop else await _enqueue(ctx, count)
        await conn.execute(
            "UPDATE eventos_pendentes SET proxima_tentativa = now() + interval '1 hour'"
            " WHERE id = ANY($1::uuid[])",
            ids,
        )
        await conn.execute(_LEFTOVERS, ids)
        env = {"CONEXOES_TEST_JOB_MODULE": "bench.noop_jobs"} if noop else {}
        await stack.start_worker(concurrency, name="queue-worker", env=env)
        cpu_before = stack.cpu()
        started = time.perf_counter()
        await conn.execute(
            "UPDATE eventos_pendentes SET proxima_tentativa = now() WHERE id = ANY($1::uuid[])",
            ids,
        )
        # The queue's trigger NOTIFYs on inserts and status changes, not on this UPDATE:
        # wake the worker as an enqueue would, instead of leaving it to its next poll.
        await conn.execute(f"NOTIFY {JOBS_CHANNEL}")
        # Polled from the server core's PostgreSQL while the worker drains: the query stays
        # on the queue's two small partial indexes instead of looking up every drained id.
        async with asyncio.timeout(300):
            while True:
                if not await conn.fetchval(_UNFINISHED, OPERATION if noop else "whatsapp_send"):
                    break
                await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        cpu = per_item_ms(cpu_before, stack.cpu(), count)
        completed, failed = await conn.fetchrow(_FINISHED, ids)
    finally:
        await conn.close()
        await stack.stop_worker("queue-worker")
    if failed:
        ctx.report.notes.append(
            f"{ROW}: {failed} of {count} {'no-op' if noop else 'send'} jobs failed"
        )
    return {"jobs": completed, "seconds": round(elapsed, 3),
            "jobs_per_s": round(completed / elapsed, 1), "cpu_ms_per_job": cpu}  # fmt: skip


async def _bare(
    ctx: Context, concurrency: int, count: int, payload: dict[str, str]
) -> dict[str, Any]:
    """The bare loop over `count` rows, with its CPU per job and PostgreSQL's (taken around
    the drain only, after its rows are in)."""
    stack = ctx.stack
    config = {"dsn": stack.dsn, "jobs": count, "concurrency": concurrency, "payload": payload}
    async with LoadGen(stack.reaper, "bench.baselines.queue", config, stack.load_env(),
                       server_side=True) as gen:  # fmt: skip
        await gen.message(300)  # ready: rows inserted
        before = stack.cpu()
        await gen.reply()
        await gen.message(300)  # drained: its connections still open
        postgres = per_item_ms(before, stack.cpu(), count).get("postgres", 0.0)
        await gen.reply()
        result = await gen.result(300)
    result["cpu_ms_per_job"] = {"loop": result.pop("loop_cpu_ms_per_job"), "postgres": postgres}
    return result


async def run(ctx: Context) -> None:
    profile = ctx.profile
    count = profile.queue_jobs
    raw = {}
    for concurrency in profile.queue_workers:
        ours, bare = [], []
        for _ in range(profile.runs):
            ours.append(await _drain(ctx, concurrency, count))
            bare.append(await _bare(ctx, concurrency, count, {"message_id": str(uuid.uuid4())}))
        raw[str(concurrency)] = {"ours": ours, "baseline": bare}
        ctx.report.add(Figure(
            ROW, f"jobs/s, {concurrency} at once", median_of(ours, "jobs_per_s"),
            median_of(bare, "jobs_per_s"), "higher", len(ours), "bare SKIP LOCKED loop (asyncpg)",
            f"{count} whatsapp_send jobs per drain",
        ))  # fmt: skip
        ctx.report.notes.append(f"{ROW}: CPU ms per job on the server core ({concurrency} at "
                                f"once, last run): {ours[-1]['cpu_ms_per_job']}; bare loop "
                                f"{bare[-1]['cpu_ms_per_job']}")  # fmt: skip
    ours, bare = [], []
    for _ in range(profile.runs):
        ours.append(await _drain(ctx, 4, count, noop=True))
        bare.append(await _bare(ctx, 4, count, {}))
    raw["noop"] = {"ours": ours, "baseline": bare}
    ctx.report.add(Figure(
        ROW, "no-op jobs/s, 4 at once", median_of(ours, "jobs_per_s"),
        median_of(bare, "jobs_per_s"), "higher", len(ours), "bare SKIP LOCKED loop (asyncpg)",
        f"{count} jobs of a handler that does nothing per drain: the queue's own cost",
    ))  # fmt: skip
    ctx.report.notes.append(f"{ROW}: CPU ms per no-op job on the server core (4 at once, "
                            f"last run): {ours[-1]['cpu_ms_per_job']}; bare loop "
                            f"{bare[-1]['cpu_ms_per_job']}")  # fmt: skip
    ctx.report.raw["queue"] = raw
