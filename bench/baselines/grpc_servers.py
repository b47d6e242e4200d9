"""Bare grpc.aio servers (`python -m bench.baselines.grpc_servers <kind> <config-json>`).

- echo: one unary method answering fixed bytes (our GetWhatsAppStatus reply, captured).
- fanout: `Subscribe` streams (first message: a fixed snapshot) and `Publish`, which puts the
  published bytes on every subscriber's queue: the fan-out our event bus does, and nothing else.
- insert: one unary method doing one asyncpg INSERT of the body (with `notify`, INSERT + NOTIFY
  in one transaction), answering the new row's id.

No protobuf (de)serialization, no interceptors, no auth: handlers take and return bytes. The
server options are our server's own (`server.app.SERVER_OPTIONS`), so stream limits match.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc

from server.app import SERVER_OPTIONS

SERVICE = "bench.Bare"
INBOX_DDL = (
    "CREATE TABLE IF NOT EXISTS bench_inbox ("
    " id bigserial PRIMARY KEY, body bytea NOT NULL, received_at timestamptz DEFAULT now())"
)
NOTIFY_CHANNEL = "bench_events"


def _echo(config: dict[str, Any]) -> dict[str, grpc.RpcMethodHandler]:
    reply = base64.b64decode(config["reply_b64"])

    async def echo(_request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        return reply

    return {"Echo": grpc.unary_unary_rpc_method_handler(echo)}


def _fanout(config: dict[str, Any]) -> dict[str, grpc.RpcMethodHandler]:
    snapshot = base64.b64decode(config["snapshot_b64"])
    queues: set[asyncio.Queue[bytes]] = set()

    async def subscribe(
        _request: bytes, _context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(256)
        queues.add(queue)
        try:
            yield snapshot
            while True:
                yield await queue.get()
        finally:
            queues.discard(queue)

    async def publish(request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        for queue in list(queues):
            queue.put_nowait(request)
        return str(len(queues)).encode()

    return {
        "Subscribe": grpc.unary_stream_rpc_method_handler(subscribe),
        "Publish": grpc.unary_unary_rpc_method_handler(publish),
    }


async def _insert(config: dict[str, Any]) -> dict[str, grpc.RpcMethodHandler]:
    import asyncpg

    # Our server's pool holds up to 20 connections (db.engine: 10 + 10 overflow).
    pool = await asyncpg.create_pool(config["dsn"], min_size=2, max_size=20)
    async with pool.acquire() as conn:
        await conn.execute(INBOX_DDL)
    notify = bool(config.get("notify"))

    async def insert(request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        async with pool.acquire() as conn:
            if not notify:
                row_id = await conn.fetchval(
                    "INSERT INTO bench_inbox (body) VALUES ($1) RETURNING id", request
                )
            else:
                async with conn.transaction():
                    row_id = await conn.fetchval(
                        "INSERT INTO bench_inbox (body) VALUES ($1) RETURNING id", request
                    )
                    await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(row_id))
        return str(row_id).encode()

    return {"Insert": grpc.unary_unary_rpc_method_handler(insert)}


async def serve(kind: str, config: dict[str, Any]) -> None:
    if kind == "echo":
        handlers = _echo(config)
    elif kind == "fanout":
        handlers = _fanout(config)
    elif kind == "insert":
        handlers = await _insert(config)
    else:
        raise SystemExit(f"unknown baseline {kind!r}")
    server = grpc.aio.server(options=list(SERVER_OPTIONS))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    server.add_insecure_port(config["address"])
    await server.start()
    print(f"baseline {kind} listening on {config['address']}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main() -> None:
    # Plain asyncio, as `python -m server serve` runs: the baseline gets no loop our server lacks.
    asyncio.run(serve(sys.argv[1], json.loads(sys.argv[2])))


if __name__ == "__main__":
    main()
