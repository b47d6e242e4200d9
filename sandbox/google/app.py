"""Builds the Google fake: consent screen, token endpoint, userinfo, Calendar API, push
notifications and control routes in one app (mounted at `/google`; the server's three Google
base URLs all point there)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette

from sandbox.google import calendar, control, oauth
from sandbox.google.push import PushDispatcher
from sandbox.google.settings import GoogleSettings
from sandbox.google.state import GoogleState


@dataclass(frozen=True)
class GoogleFake:
    app: Starlette
    state: GoogleState
    push: PushDispatcher

    async def aclose(self) -> None:
        await self.push.aclose()


def build_google_fake(
    settings: GoogleSettings | None = None, clock: Callable[[], float] = time.time
) -> GoogleFake:
    settings = settings or GoogleSettings()
    state = GoogleState(settings, clock)
    push = PushDispatcher(settings.push_rewrite)
    app = Starlette(routes=[*control.ROUTES, *oauth.ROUTES, *calendar.ROUTES])
    app.state.google = state
    app.state.google_push = push
    return GoogleFake(app, state, push)
