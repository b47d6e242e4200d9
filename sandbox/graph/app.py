"""Builds the Graph fake: state + webhook dispatcher + Graph, dialog and control routes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.middleware import Middleware

from sandbox.graph import ads_api, ads_control, api, control
from sandbox.graph.errors import GraphError
from sandbox.graph.settings import GraphSettings
from sandbox.graph.state import GraphState
from sandbox.graph.webhooks import WebhookDispatcher


@dataclass(frozen=True)
class GraphFake:
    """One Graph fake: the ASGI app to mount (serves both graph.facebook.com's API and
    www.facebook.com's login dialog), and its state for in-process tests."""

    app: Starlette
    state: GraphState

    async def aclose(self) -> None:
        await self.state.dispatcher.aclose()


def build_graph_fake(
    settings: GraphSettings | None = None, clock: Callable[[], float] = time.time
) -> GraphFake:
    """A fresh fake with its own state; nothing is shared between two calls."""
    settings = settings or GraphSettings()
    dispatcher = WebhookDispatcher(
        retry_delays=lambda: settings.webhook_retry_delays,
        timeout=settings.webhook_timeout_seconds,
    )
    state = GraphState(settings, dispatcher, clock)
    app = Starlette(
        routes=[
            *control.ROUTES,
            *ads_control.ROUTES,
            *ads_api.ROUTES,
            *api.ROUTES,
            *ads_api.TAIL_ROUTES,
        ],
        middleware=[Middleware(api.GraphGuard, state=state)],
        exception_handlers={
            GraphError: api.render_error,
            404: api.render_no_route,
            405: api.render_no_route,
        },
    )
    app.state.graph = state
    return GraphFake(app=app, state=state)
