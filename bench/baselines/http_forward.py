"""Bare Starlette under uvicorn (uvloop, httptools), as the sidecar runs: POST
/webhooks/waha/{tenant_id} (and /webhooks/meta-leads) reads the body and forwards it as one
bare grpc.aio unary call (`bench.baselines.grpc_servers insert`), answering 200 with the reply.

`python -m bench.baselines.http_forward <config-json>`: address (host:port), grpc_target.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import grpc
import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.baselines.grpc_servers import SERVICE


async def serve(config: dict[str, Any]) -> None:
    # Created on the serving loop, as the sidecar creates its channel (grpc.aio binds to it).
    channel = grpc.aio.insecure_channel(config["grpc_target"])
    insert = channel.unary_unary(f"/{SERVICE}/Insert")

    async def ingest(request: Request) -> Response:
        body = await request.body()
        try:
            reply = await insert(body, timeout=10)
        except grpc.aio.AioRpcError:
            return Response("unavailable", status_code=503)
        return Response(reply, status_code=200, media_type="text/plain")

    app = Starlette(
        routes=[
            Route("/webhooks/waha/{tenant_id}", ingest, methods=["POST"]),
            Route("/webhooks/meta-leads", ingest, methods=["POST"]),
            Route("/webhooks/instagram", ingest, methods=["POST"]),
        ]
    )
    host, _, port = config["address"].rpartition(":")
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=int(port),
            http="httptools",
            loop="uvloop",
            access_log=False,
            lifespan="off",
            log_level="info",
        )
    )
    try:
        await server.serve()
    finally:
        await channel.close()


def main() -> None:
    uvloop.run(serve(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
