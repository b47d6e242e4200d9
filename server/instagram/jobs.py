"""Instagram's queued work and periodic tasks, registered at start-up."""

from __future__ import annotations

from server.bootstrap import Deps
from server.instagram import inbound, refresh, sending, window_alerts
from server.resilience.jobs import Job
from server.resilience.operations import INSTAGRAM_EVENT, INSTAGRAM_SEND


def register_jobs(deps: Deps) -> None:
    async def on_event(job: Job) -> None:
        await inbound.handle(deps, job)

    async def on_send(job: Job) -> None:
        await sending.send_job(deps, job)

    async def token_refresh() -> None:
        await refresh.run_refresh(deps)

    async def closing_windows() -> None:
        await window_alerts.run_window_alerts(deps)

    # Queued by the ingress (server/ingress/routes.py).
    deps.jobs.register(INSTAGRAM_EVENT, on_event)
    # Spec "Instagram Send Message": 3 tries, 2 s, exponential, 15 s timeout.
    deps.jobs.register(INSTAGRAM_SEND, on_send, on_dead_letter=sending.dead_lettered)
    deps.scheduler.every(refresh.TASK, refresh.INTERVAL_S, token_refresh)
    deps.scheduler.every(window_alerts.TASK, window_alerts.INTERVAL_S, closing_windows)
