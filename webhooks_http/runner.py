"""Running the sidecar under uvicorn: `python -m webhooks_http`, and the tests' real HTTP edge.

uvicorn's own forwarded-header handling stays off (`proxy_headers=False`): by default it trusts
X-Forwarded-For from 127.0.0.1, which would let any local client pick the address the rate
limiter sees. Trusted proxies are the sidecar's business (ratelimit.client_address).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from webhooks_http.slow_clients import SlowClientLimits, guarded_httptools

_log = logging.getLogger(__name__)


def split_address(address: str) -> tuple[str, int]:
    """ "host:port" (IPv6 in brackets) -> (host, port)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {address!r}")
    return host.strip("[]"), int(port)


def uvicorn_config(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    slow_clients: SlowClientLimits | None = None,
    **overrides: object,
) -> uvicorn.Config:
    options: dict[str, object] = {
        "host": host,
        "port": port,
        # httptools, with bounded time for request headers and bodies (slow_clients.py).
        "http": guarded_httptools(slow_clients),
        "loop": "uvloop",
        "proxy_headers": False,
        # uvicorn's access log prints query strings: hub.verify_token, OAuth code and state.
        "access_log": False,
        "server_header": False,
        "lifespan": "off",
        "log_level": "info",
        "timeout_graceful_shutdown": 10,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)  # type: ignore[arg-type]


@dataclass
class RunningSidecar:
    server: uvicorn.Server
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def serve_in_background(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    slow_clients: SlowClientLimits | None = None,
    **overrides: object,
) -> AsyncIterator[RunningSidecar]:
    """uvicorn on the running loop (port 0: any free port) until the block exits."""
    config = uvicorn_config(
        app, host, port, slow_clients=slow_clients, log_level="warning", **overrides
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises the start-up error
            raise RuntimeError("uvicorn stopped during start-up")
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningSidecar(server=server, port=int(bound))
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=15)
