"""Many concurrent server streams, then one change delivered to all of them, several times.

1. Ramp: open `count` streams in batches of `batch` (each batch waits for every stream's first
   message, the snapshot), `per_channel` streams per channel (one HTTP/2 connection each).
2. Print {"ready": ...} and wait for a line on stdin: the runner reads the server's memory.
3. For each of `changes`: note the time, trigger one change, and wait until every stream has
   received it; each stream's latency is its arrival time minus the trigger time.

side "ours":  WatchWhatsAppStatus; the trigger is a signed WAHA `session.status` webhook to the
              sidecar (the status then moves through the inbox, the queue, a worker, NOTIFY and
              the bus to each stream), alternating STARTING / WORKING.
side "bare":  the bare fan-out's Subscribe; the trigger is its Publish of the same message bytes.

Config: side, target, method, request_b64, token, count, batch, per_channel, changes, and
triggers (ours: url, path and a list of {body_b64, headers}) or publish_b64 (bare).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from typing import Any

import grpc
import httpx
from renove.conexoes.v1 import whatsapp_service_pb2 as wpb

from bench.load.common import channel, emit, metadata, run, wait_for_go
from bench.stats import latency_summary

SETTLE_S = 60.0


class Fleet:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.request = base64.b64decode(config["request_b64"])
        self.md = metadata(config.get("token"))
        self.channels: list[grpc.aio.Channel] = []
        self.calls: list[grpc.aio.UnaryStreamCall] = []
        self.readers: list[asyncio.Task[None]] = []
        self.arrivals: list[list[float]] = []  # per change: arrival times
        self.complete = asyncio.Event()
        self.failures: dict[str, int] = {}
        self.first_failure = ""

    def _record_failure(self, exc: BaseException) -> None:
        name = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
        self.failures[name] = self.failures.get(name, 0) + 1
        if not self.first_failure:
            details = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
            self.first_failure = f"{name}: {details}"

    async def _open_one(self, index: int) -> grpc.aio.UnaryStreamCall | None:
        per_channel = int(self.config["per_channel"])
        if index // per_channel >= len(self.channels):
            self.channels.append(channel(self.config["target"], len(self.channels)))
        method = self.channels[index // per_channel].unary_stream(self.config["method"])
        call = method(self.request, metadata=self.md)
        try:
            first = await asyncio.wait_for(call.read(), 60)
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            self._record_failure(exc)
            call.cancel()
            return None
        if first is grpc.aio.EOF:
            self._record_failure(RuntimeError("stream ended before its snapshot"))
            return None
        return call

    async def ramp(self) -> float:
        began = time.monotonic()
        count, batch = int(self.config["count"]), int(self.config["batch"])
        for start in range(0, count, batch):
            opened = await asyncio.gather(
                *(self._open_one(i) for i in range(start, min(count, start + batch)))
            )
            self.calls += [c for c in opened if c is not None]
        for call in self.calls:
            self.readers.append(asyncio.create_task(self._read(call)))
        return time.monotonic() - began

    async def _read(self, call: grpc.aio.UnaryStreamCall) -> None:
        seen = 0
        try:
            while True:
                raw = await call.read()
                if raw is grpc.aio.EOF:
                    return
                # Both sides' messages are WatchWhatsAppStatusResponse bytes: parse alike.
                message = wpb.WatchWhatsAppStatusResponse.FromString(raw)
                if message.WhichOneof("kind") != "session" or seen >= len(self.arrivals):
                    continue
                self.arrivals[seen].append(time.perf_counter())
                seen += 1
                if len(self.arrivals[-1]) == len(self.calls):
                    self.complete.set()
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self._record_failure(exc)

    async def close(self) -> None:
        for call in self.calls:
            call.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        for ch in self.channels:
            await ch.close()


async def _trigger(config: dict[str, Any], index: int, http: httpx.AsyncClient) -> None:
    if config["side"] == "ours":
        trigger = config["triggers"][index]
        response = await http.post(
            config["url"] + config["path"],
            content=base64.b64decode(trigger["body_b64"]),
            headers=trigger["headers"],
        )
        response.raise_for_status()
    else:
        async with channel(config["target"], 10_000) as ch:
            await ch.unary_unary("/bench.Bare/Publish")(base64.b64decode(config["publish_b64"]))


async def main(config: dict[str, Any]) -> dict[str, Any]:
    fleet = Fleet(config)
    ramp_s = await fleet.ramp()
    opened = len(fleet.calls)
    emit(ready={"opened": opened, "failures": fleet.failures, "ramp_s": round(ramp_s, 2)})
    await wait_for_go()
    changes = []
    async with httpx.AsyncClient(timeout=30) as http:
        for index in range(int(config["changes"]) if opened else 0):
            fleet.complete.clear()
            fleet.arrivals.append([])
            started = time.perf_counter()
            await _trigger(config, index, http)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fleet.complete.wait(), SETTLE_S)
            arrived = fleet.arrivals[-1]
            latencies = [(t - started) * 1000 for t in arrived]
            changes.append(
                {**latency_summary(latencies), "delivered": len(arrived),
                 "all_ms": round(max(latencies, default=0.0), 2)}
            )  # fmt: skip
            await asyncio.sleep(0.2)
    await fleet.close()
    return {
        "opened": opened,
        "wanted": int(config["count"]),
        "ramp_s": round(ramp_s, 2),
        "channels": len(fleet.channels),
        "failures": fleet.failures,
        "first_failure": fleet.first_failure,
        "changes": changes,
    }


if __name__ == "__main__":
    run(main)
