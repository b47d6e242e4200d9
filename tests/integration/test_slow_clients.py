"""Slow and dripping clients at the public port (the real sidecar under uvicorn): headers and
bodies must arrive in bounded time, or the request is answered 408 and the connection closed.
The limits are shortened here; the defaults are 10 s without progress and 30 s in all."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.integration.ingress_helpers import sidecar_settings
from tests.support.grpc_server import RunningServer
from webhooks_http.app import SidecarOptions, build_sidecar_app
from webhooks_http.runner import RunningSidecar, serve_in_background
from webhooks_http.slow_clients import SlowClientLimits

LIMITS = SlowClientLimits(header_timeout_s=0.5, body_idle_timeout_s=0.5, body_total_timeout_s=1.5)


@pytest.fixture(scope="module")
async def sidecar(server: RunningServer) -> AsyncIterator[RunningSidecar]:
    app = build_sidecar_app(sidecar_settings(), server.channel, options=SidecarOptions())
    async with serve_in_background(app, slow_clients=LIMITS) as running:
        yield running


async def _answer(reader: asyncio.StreamReader, within: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), timeout=within)


def _head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: sidecar\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\n\r\n"
    ).encode()


async def test_a_slow_drip_body_is_cut_off(sidecar: RunningSidecar) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.port)
    writer.write(_head(f"/webhooks/waha/{uuid.uuid4()}", 10_000))
    await writer.drain()
    answer = asyncio.create_task(_answer(reader))
    sent = 0
    # One byte every 0.1 s: progress all along, never the whole body in time.
    while not answer.done() and sent < 100:
        try:
            writer.write(b" ")
            await writer.drain()
        except ConnectionError:
            break
        sent += 1
        await asyncio.wait([answer], timeout=0.1)
    received = await answer
    writer.close()
    assert received.startswith(b"HTTP/1.1 408"), received[:80]
    assert sent < 100


async def test_a_stalled_body_and_dripping_headers_are_cut_off(sidecar: RunningSidecar) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.port)
    writer.write(_head("/webhooks/meta-leads", 500) + b'{"object":')
    await writer.drain()
    assert (await _answer(reader)).startswith(b"HTTP/1.1 408")
    writer.close()

    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.port)
    writer.write(b"GET /healthz HTTP/1.1\r\n")
    answer = asyncio.create_task(_answer(reader))
    for n in range(60):
        try:
            writer.write(f"x-drip-{n}: 1\r\n".encode())
            await writer.drain()
        except ConnectionError:
            break
        await asyncio.wait([answer], timeout=0.05)
        if answer.done():
            break
    assert (await answer).startswith(b"HTTP/1.1 408")
    writer.close()

    # A connection that never sends a byte is closed too.
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.port)
    assert (await _answer(reader)).startswith(b"HTTP/1.1 408")
    writer.close()


async def test_prompt_clients_are_served(sidecar: RunningSidecar) -> None:
    async with httpx.AsyncClient(base_url=sidecar.url) as client:
        assert (await client.get("/healthz")).status_code == 200
        unsigned = await client.post(f"/webhooks/waha/{uuid.uuid4()}", content=b"{}")
        assert unsigned.status_code == 401
