"""Builds the Instagram fake: state + webhook dispatcher + the Instagram and control routes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.instagram import api, control
from sandbox.instagram.errors import InstagramError
from sandbox.instagram.state import InstagramState
from sandbox.instagram.webhooks import WebhookDispatcher


@dataclass(frozen=True)
class InstagramSettings:
    """app_id / app_secret: the Instagram app (App Dashboard > Instagram > API setup).
    webhook_url: where messaging webhooks go (empty: none until configured).
    webhook_retry_delays: seconds before each redelivery after a failed POST."""

    app_id: str = "990011223344556"
    app_secret: str = "sandbox-instagram-app-secret"
    webhook_url: str = ""
    webhook_retry_delays: tuple[float, ...] = (1.0, 5.0, 30.0)
    webhook_timeout_seconds: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> InstagramSettings:
        """`SANDBOX_INSTAGRAM_*`, falling back to the server's `CONEXOES_INSTAGRAM_*`."""
        env = os.environ if environ is None else environ
        d = cls()
        return cls(
            app_id=env.get(
                "SANDBOX_INSTAGRAM_APP_ID", env.get("CONEXOES_INSTAGRAM_APP_ID", d.app_id)
            ),
            app_secret=env.get(
                "SANDBOX_INSTAGRAM_APP_SECRET",
                env.get("CONEXOES_INSTAGRAM_APP_SECRET", d.app_secret),
            ),
            webhook_url=env.get("SANDBOX_INSTAGRAM_WEBHOOK_URL", d.webhook_url),
        )


@dataclass(frozen=True)
class InstagramFake:
    app: Starlette
    state: InstagramState

    async def aclose(self) -> None:
        await self.state.dispatcher.aclose()


async def _no_route(request: Request, exc: Exception) -> Response:
    error = InstagramError(100, f"Unknown path components: {request.url.path}")
    return JSONResponse(error.body(), status_code=400)


def build_instagram_fake(
    settings: InstagramSettings | None = None, clock: Callable[[], float] = time.time
) -> InstagramFake:
    """A fresh fake with its own state."""
    settings = settings or InstagramSettings()
    dispatcher = WebhookDispatcher(
        retry_delays=lambda: settings.webhook_retry_delays,
        timeout=settings.webhook_timeout_seconds,
    )
    state = InstagramState(
        settings.app_id, settings.app_secret, settings.webhook_url, dispatcher, wall=clock
    )
    app = Starlette(
        routes=[*control.ROUTES, *api.ROUTES],
        exception_handlers={InstagramError: api.render_error, 404: _no_route, 405: _no_route},
    )
    app.state.instagram = state
    return InstagramFake(app=app, state=state)
