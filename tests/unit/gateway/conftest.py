"""Fixtures: the test contract compiled at test time, a real grpc.aio server implementing it, the
gateway in a Starlette app, an httpx client over ASGI, and a real uvicorn for streaming."""

from __future__ import annotations

import asyncio
import importlib
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import grpc_tools
import httpx
import pytest
import pytest_asyncio
import uvicorn
from google.api import annotations_pb2
from grpc_tools import protoc
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.routing import Route

from webhooks_http.gateway import CatchAll, build_gateway

from .servicer import Recorder, ThingService

PROTO_ROOT = Path(__file__).parent / "protos"
CONTRACT_ROOT = Path(__file__).parents[3] / "protos"  # renove/conexoes/v1/options.proto
MAX_BODY = 4096
CORS_ORIGIN = "https://app.renove.test"


@pytest.fixture(scope="session")
def things_pb2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """Compile tests/unit/gateway/protos into a temp dir and import the module."""
    out = tmp_path_factory.mktemp("gwtest_gen")
    google_api_root = Path(annotations_pb2.__file__).parents[2]  # holds google/api/*.proto
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{CONTRACT_ROOT}",
            f"-I{google_api_root}",
            f"-I{well_known}",
            f"--python_out={out}",
            "gwtest/v1/things.proto",
        ]
    )
    assert code == 0, "protoc failed on the test proto"
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("gwtest.v1.things_pb2")
    finally:
        sys.path.remove(str(out))


@pytest.fixture(scope="session")
def recorder() -> Recorder:
    return Recorder()


@pytest_asyncio.fixture(scope="session")
async def grpc_channel(things_pb2: ModuleType, recorder: Recorder) -> AsyncIterator[Any]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([ThingService(things_pb2, recorder).handler()])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(grace=None)


@pytest.fixture(scope="session")
def app(things_pb2: ModuleType, grpc_channel: Any) -> Starlette:
    gateway = build_gateway(
        [things_pb2.DESCRIPTOR],
        grpc_channel,
        max_body_bytes=MAX_BODY,
        default_deadline_s=5.0,
        cors_origins=[CORS_ORIGIN],
        sse_keepalive_s=0.2,
    )

    async def webhook(_: object) -> PlainTextResponse:
        return PlainTextResponse("webhook")

    async def callback(_: object) -> RedirectResponse:
        return RedirectResponse("https://app.renove.test/done", status_code=302)

    # The sidecar's own routes come first; the gateway takes whatever is left.
    return Starlette(
        routes=[
            Route("/webhooks/waha", webhook),
            Route("/api/v1/callbacks/thing", callback),  # ThingCallback, a documented redirect
            CatchAll(gateway),
        ]
    )


@pytest_asyncio.fixture(scope="session")
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        yield http


@pytest_asyncio.fixture(scope="session")
async def live_url(app: Starlette) -> AsyncIterator[str]:
    """A real uvicorn serving the app on a free loopback port (streaming needs a real socket)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()
