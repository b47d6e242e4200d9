"""A bare job queue drained by `concurrency` asyncpg loops: claim one row with
FOR UPDATE SKIP LOCKED (status, attempt count and lease set, as our queue does), then mark it
completed. No handler, no provider call: what the queue alone costs.

`python -m bench.baselines.queue` with JSON config on stdin (dsn, jobs, concurrency, payload);
runs on the server core (see LoadGen server_side) and prints {"result": ...}.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg

from bench.load.common import run

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
    pool = await asyncpg.create_pool(config["dsn"], min_size=1, max_size=20)
    async with pool.acquire() as conn:
        await conn.execute(DDL)
        payload = json.dumps(config["payload"])
        await conn.executemany(
            "INSERT INTO bench_jobs (payload) VALUES ($1::jsonb)",
            [(payload,)] * int(config["jobs"]),
        )
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

    started = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(int(config["concurrency"]))))
    elapsed = time.perf_counter() - started
    await pool.close()
    return {"jobs": done, "seconds": round(elapsed, 3), "jobs_per_s": round(done / elapsed, 1)}


if __name__ == "__main__":
    run(main)
