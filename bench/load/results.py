"""Webhook to result, under a steady (open-loop) rate: each webhook is sent on schedule whether
or not earlier ones were answered, and its latency runs until its result is observed.

side "ours":  the result is the event on Connections.WatchEvents (MESSAGE_RECEIVED carrying the
              message body or the DM's text, or LEAD_RECEIVED carrying the leadgen id), i.e.
              after the sidecar, the inbox, the queue, the worker, the CRM rows and NOTIFY.
side "bare":  the same bodies to the bare Starlette -> grpc.aio -> INSERT + NOTIFY baseline; the
              result is the NOTIFY heard on a LISTEN connection.

Config: side, kind (whatsapp | leads | instagram), url, path, rate, duration_s, drain_s,
requests (a list of {key, body_b64, headers}), and target + token (ours) or dsn (bare).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from typing import Any

import grpc
from google.protobuf import json_format
from renove.conexoes.v1 import connections_service_pb2 as cpb
from renove.conexoes.v1 import connections_service_pb2_grpc as cpb_grpc

from bench.load.common import channel, metadata, run
from bench.load.http_client import HttpConnection
from bench.stats import latency_summary


class Sender:
    """Posts prepared requests at their scheduled times over a pool of keep-alive connections."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.idle: list[HttpConnection] = []
        self.sent_at: dict[str, float] = {}
        self.replies: dict[str, bytes] = {}
        self.statuses: dict[str, int] = {}

    async def post(self, key: str, raw: bytes) -> None:
        conn = self.idle.pop() if self.idle else HttpConnection(self.url)
        self.sent_at[key] = time.perf_counter()
        status, body = await conn.send(raw)
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        self.replies[key] = body
        self.idle.append(conn)

    async def run(self, requests: list[tuple[str, bytes]], rate: float) -> None:
        began = time.perf_counter()
        tasks = []
        for index, (key, raw) in enumerate(requests):
            delay = began + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.post(key, raw)))
        await asyncio.gather(*tasks)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()


def _key_of(event: cpb.ConnectionEvent, kind: str) -> str | None:
    payload = json_format.MessageToDict(event.payload)
    if kind == "leads":
        value = payload.get("leadgen_id")
        return None if value is None else str(value)
    message = payload.get("message") or {}
    if kind == "instagram":  # an InstagramMessage: its content is message.text
        body = str((message.get("message") or {}).get("text") or "")
    else:
        body = str(message.get("body") or "")
    return body.split(" ", 1)[0] if body.startswith("bench:") else None


async def _ours(config: dict[str, Any], requests: list[tuple[str, bytes]]) -> dict[str, Any]:
    kind = config["kind"]
    seen: dict[str, float] = {}
    wanted = {key for key, _ in requests}
    kinds = [cpb.EVENT_KIND_LEAD_RECEIVED if kind == "leads" else cpb.EVENT_KIND_MESSAGE_RECEIVED]
    async with channel(config["target"]) as ch:
        stream = cpb_grpc.ConnectionsServiceStub(ch).WatchEvents(
            cpb.WatchEventsRequest(scope=cpb.OVERVIEW_SCOPE_TENANT, kinds=kinds),
            metadata=metadata(config["token"]),
        )
        first = await stream.read()
        assert first.WhichOneof("kind") == "snapshot", first

        async def follow() -> None:
            while True:
                message = await stream.read()
                if message is grpc.aio.EOF:
                    return
                if message.WhichOneof("kind") != "event":
                    continue
                key = _key_of(message.event, kind)
                if key in wanted and key not in seen:
                    seen[key] = time.perf_counter()
                    if len(seen) == len(wanted):
                        return

        watcher = asyncio.create_task(follow())
        sender = Sender(config["url"])
        await sender.run(requests, float(config["rate"]))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(watcher), float(config["drain_s"]))
        watcher.cancel()
        stream.cancel()
        sender.close()
    latencies = [(seen[k] - sender.sent_at[k]) * 1000 for k in seen]
    return {**latency_summary(latencies), "sent": len(requests), "observed": len(seen),
            "statuses": sender.statuses}  # fmt: skip


async def _bare(config: dict[str, Any], requests: list[tuple[str, bytes]]) -> dict[str, Any]:
    import asyncpg

    heard: dict[str, float] = {}
    changed = asyncio.Event()

    def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        heard.setdefault(payload, time.perf_counter())
        changed.set()

    conn = await asyncpg.connect(config["dsn"])
    await conn.add_listener("bench_events", on_notify)
    sender = Sender(config["url"])
    await sender.run(requests, float(config["rate"]))
    by_row = {reply.decode(): key for key, reply in sender.replies.items()}
    async with asyncio.timeout(float(config["drain_s"])):
        while not set(by_row) <= set(heard):
            changed.clear()
            await changed.wait()
    await conn.close()
    sender.close()
    latencies = [(heard[row] - sender.sent_at[key]) * 1000 for row, key in by_row.items()]
    return {**latency_summary(latencies), "sent": len(requests), "observed": len(latencies),
            "statuses": sender.statuses}  # fmt: skip


async def main(config: dict[str, Any]) -> dict[str, Any]:
    probe = HttpConnection(config["url"])
    requests = [
        (r["key"], probe.request_bytes("POST", config["path"], base64.b64decode(r["body_b64"]),
                                        r["headers"]))
        for r in config["requests"]
    ]  # fmt: skip
    if config["side"] == "ours":
        return await _ours(config, requests)
    return await _bare(config, requests)


if __name__ == "__main__":
    run(main)
