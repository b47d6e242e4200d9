"""Builds the WAHA fake: state + webhook dispatcher + API and control routes in one ASGI app."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.middleware import Middleware

from sandbox.settings import WahaSettings
from sandbox.waha import api, control
from sandbox.waha.errors import WahaHttpError
from sandbox.waha.state import WahaState
from sandbox.waha.webhooks import WebhookDispatcher


@dataclass(frozen=True)
class WahaFake:
    """One WAHA fake: the ASGI app to mount, and its state for in-process tests."""

    app: Starlette
    state: WahaState

    async def aclose(self) -> None:
        """Cancel background work (boot, QR rotation, deliveries) and close the HTTP client."""
        await self.state.aclose()


def build_waha_fake(settings: WahaSettings, clock: Callable[[], float] = time.time) -> WahaFake:
    """A fresh fake with its own state; nothing is shared between two calls."""
    dispatcher = WebhookDispatcher(settings=settings, clock=clock)
    state = WahaState(settings=settings, dispatcher=dispatcher, clock=clock)
    app = Starlette(
        routes=[*control.ROUTES, *api.ROUTES],
        middleware=[Middleware(api.ApiGuard, state=state)],
        exception_handlers={
            WahaHttpError: api.render_error,
            404: api.render_no_route,
            405: api.render_no_route,
        },
    )
    app.state.waha = state
    return WahaFake(app=app, state=state)
