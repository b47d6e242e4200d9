"""A bare job queue drained by `concurrency` asyncpg loops: claim one row with
FOR UPDATE SKIP LOCKED (status, attempt count and lease set, as our queue does), then mark it
completed. No handler, no provider call: what the queue alone costs.

`python -m bench.baselines.queue` with JSON config on stdin (dsn, jobs, concurrency, payload);
runs on the server core (see LoadGen server_side), prints {"ready": ...} once its rows are in
and waits for a line on stdin (the runner takes PostgreSQL's CPU then), prints
{"drained": ...} and waits again once the rows are done, and prints {"result": ...} with its
own CPU per job.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg

from bench.load.common import emit, run, wait_for_go

DDL = """
DROP TABLE IF EXISTS bench_jobs;
CREATE TABLE bench_jobs (
    id bigserial PRIMARY KEY,
    status text NOT NULL DEFAULT 'pending',
    payload jsonb NOT NULL,
    tentativas int NOT NULL DEFAULT 0,
    lease_owner text,
    lease_expires_at timestamptz,
    proxima_tentativa timestamptz NOT NULL DEFAULT now(),
    atualizado_em timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bench_jobs_due ON bench_jobs (proxima_tentativa) WHERE status = 'pending';
"""
CLAIM = """
UPDATE bench_jobs SET status = 'running', tentativas = tentativas + 1, lease_owner = $1,
       lease_expires_at = now() + interval '60 seconds', atualizado_em = now()
 WHERE id = (SELECT id FROM bench_jobs WHERE status = 'pending' AND proxima_tentativa <= now()
              ORDER BY proxima_tentativa FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING id, payload
"""
COMPLETE = """
UPDATE bench_jobs SET status = 'completed', lease_owner = NULL, lease_expires_at = NULL,
       atualizado_em = now() WHERE id = $1
"""


async def main(config: dict[str, Any]) -> dict[str, Any]:
    # Every connection open before the drain: their backends' CPU is measured around it.
    concurrency = int(config["concurrency"])
    pool = await asyncpg.create_pool(config["dsn"], min_size=concurrency, max_size=concurrency)
    async with pool.acquire() as conn:
        await conn.execute(DDL)
        payload = json.dumps(config["payload"])
        await conn.executemany(
            "INSERT INTO bench_jobs (payload) VALUES ($1::jsonb)",
            [(payload,)] * int(config["jobs"]),
        )
    emit(ready={"jobs": int(config["jobs"])})
    await wait_for_go()
    done = 0

    async def loop(index: int) -> None:
        nonlocal done
        while True:
            async with pool.acquire() as conn:
                row = await conn.fetchrow(CLAIM, f"bench-{index}")
                if row is None:
                    return
                await conn.execute(COMPLETE, row["id"])
                done += 1

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu_ms = (time.process_time() - cpu) * 1000 / max(1, done)
    emit(drained=done)  # the runner reads PostgreSQL's CPU before the backends go away
    await wait_for_go()
    await pool.close()
    return {"jobs": done, "seconds": round(elapsed, 3), "jobs_per_s": round(done / elapsed, 1),
            "loop_cpu_ms_per_job": round(cpu_ms, 3)}  # fmt: skip


if __name__ == "__main__":
    run(main)
