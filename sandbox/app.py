"""The provider sandbox: every provider fake mounted under its own prefix in one ASGI app.

Adding a provider is one line in `_fakes`: build it from `SandboxSettings`, give it a prefix.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from sandbox.chaos import Chaos, ChaosMiddleware, get_chaos, set_chaos
from sandbox.google import GoogleSettings, build_google_fake
from sandbox.graph import GraphSettings, build_graph_fake
from sandbox.instagram import InstagramSettings, build_instagram_fake
from sandbox.settings import SandboxSettings
from sandbox.waha import build_waha_fake


class ProviderFake(Protocol):
    """What the composition needs from a fake: an app to mount and a way to stop it."""

    @property
    def app(self) -> ASGIApp: ...

    async def aclose(self) -> None: ...


def _fakes(settings: SandboxSettings) -> dict[str, ProviderFake]:
    # prefix -> fake
    return {
        "/waha": build_waha_fake(settings.waha),
        "/graph": build_graph_fake(GraphSettings.from_env()),
        "/instagram": build_instagram_fake(InstagramSettings.from_env()),
        "/google": build_google_fake(GoogleSettings.from_env()),
    }


def build_sandbox_app(settings: SandboxSettings) -> Starlette:
    """Build the sandbox. Each call has its own state; `app.state.fakes` exposes the fakes."""
    fakes = _fakes(settings)
    chaos = Chaos()

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # Mounted apps get no lifespan of their own, so the root closes them.
        try:
            yield
        finally:
            for fake in fakes.values():
                await fake.aclose()

    async def index(_: Request) -> Response:
        return JSONResponse({"providers": sorted(fakes)})

    app = Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/_control/chaos", set_chaos, methods=["POST"]),
            Route("/_control/chaos", get_chaos, methods=["GET"]),
            *(Mount(prefix, app=fake.app) for prefix, fake in fakes.items()),
        ],
        lifespan=lifespan,
        middleware=[Middleware(ChaosMiddleware, chaos=chaos)],
    )
    app.state.fakes = fakes
    app.state.chaos = chaos
    return app
