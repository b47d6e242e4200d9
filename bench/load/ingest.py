"""Closed-loop webhook load: `concurrency` connections, each posting the next signed WAHA
`message` webhook as soon as the last one was answered, for `duration_s` after `warmup_s`.

Every request carries a distinct event (the inbox deduplicates repeats, which would be
cheaper); the bodies are built before the clock starts and are the same for our sidecar and
the bare baseline (same `run`, same indices).

Config: url, path, target (bench.payloads.WahaTarget fields), run, concurrency, duration_s,
warmup_s, payloads.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.load.common import run
from bench.load.http_client import HttpConnection
from bench.payloads import WahaTarget, inbound_message
from bench.stats import latency_summary


async def main(config: dict[str, Any]) -> dict[str, Any]:
    target = WahaTarget(**config["target"])
    now_ms = int(time.time() * 1000)
    probe = HttpConnection(config["url"])
    requests = []
    for index in range(int(config["payloads"])):
        signed = inbound_message(target, config["run"], index, now_ms)
        requests.append(probe.request_bytes("POST", config["path"], signed.body, signed.headers))
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    cursor = 0
    measuring = False
    warmup, duration = float(config["warmup_s"]), float(config["duration_s"])
    stop_at = time.monotonic() + warmup + duration
    exhausted = False

    async def client() -> None:
        nonlocal cursor, exhausted
        conn = HttpConnection(config["url"])
        try:
            while time.monotonic() < stop_at:
                if cursor >= len(requests):
                    exhausted = True
                    return
                raw = requests[cursor]
                cursor += 1
                started = time.perf_counter()
                status, _ = await conn.send(raw)
                if measuring:
                    latencies.append((time.perf_counter() - started) * 1000)
                    statuses[str(status)] = statuses.get(str(status), 0) + 1
        finally:
            conn.close()

    tasks = [asyncio.create_task(client()) for _ in range(int(config["concurrency"]))]
    await asyncio.sleep(warmup)
    measuring = True
    began = time.monotonic()
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - began
    ok = statuses.get("200", 0)
    return {
        "rps": round(ok / elapsed, 1),
        **latency_summary(latencies),
        "statuses": statuses,
        "sent": cursor,
        "exhausted": exhausted,
        "seconds": round(elapsed, 2),
    }


if __name__ == "__main__":
    run(main)
