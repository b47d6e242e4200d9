"""Closed-loop unary gRPC load: `concurrency` callers, each sending the next call as soon as the
last one answered, for `duration_s` after a `warmup_s`.

Requests and replies are raw bytes (no (de)serialization in the client), so the same generator
drives our GetWhatsAppStatus and the bare echo with identical request bytes.

Config: target, method (full path), request_b64, token, concurrency, channels, duration_s,
warmup_s.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import grpc

from bench.load.common import channel, metadata, run
from bench.stats import latency_summary


async def main(config: dict[str, Any]) -> dict[str, Any]:
    request = base64.b64decode(config["request_b64"])
    md = metadata(config.get("token"))
    channels = [channel(config["target"], i) for i in range(int(config.get("channels", 1)))]
    calls = [ch.unary_unary(config["method"]) for ch in channels]
    for ch in channels:
        await asyncio.wait_for(ch.channel_ready(), 10)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    reply_bytes = 0
    measuring = False
    stop_at = time.monotonic() + float(config["warmup_s"]) + float(config["duration_s"])

    async def caller(index: int) -> None:
        nonlocal reply_bytes
        call = calls[index % len(calls)]
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                reply = await call(request, metadata=md, timeout=10)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                continue
            if measuring:
                latencies.append((time.perf_counter() - started) * 1000)
                reply_bytes = len(reply)

    workers = [asyncio.create_task(caller(i)) for i in range(int(config["concurrency"]))]
    await asyncio.sleep(float(config["warmup_s"]))
    measuring = True
    began = time.monotonic()
    latencies.clear()
    await asyncio.gather(*workers)
    elapsed = time.monotonic() - began
    for ch in channels:
        await ch.close()
    return {
        "rps": round(len(latencies) / elapsed, 1),
        **latency_summary(latencies),
        "errors": errors,
        "reply_bytes": reply_bytes,
        "seconds": round(elapsed, 2),
    }


if __name__ == "__main__":
    run(main)
