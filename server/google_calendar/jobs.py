"""Registration only: the push-notification job and the periodic tasks of the room."""

from __future__ import annotations

import uuid

from server.bootstrap import Deps
from server.google_calendar import channels, scheduling, sync
from server.google_calendar.connection import BREAKER, keeper
from server.resilience.jobs import Job

NOTIFICATION = "google_calendar_notification"  # queued by the ingress (server/ingress/routes.py)
TOKEN_REFRESH_INTERVAL_S = 300.0
CHANNEL_RENEWAL_INTERVAL_S = 600.0
FALLBACK_SYNC_INTERVAL_S = 300.0


def register_jobs(deps: Deps) -> None:
    async def on_notification(job: Job) -> None:
        # `sync` only says the channel is open; `exists`/`not_exists`: something changed.
        if job.payload.get("resource_state") == "sync":
            return
        connection_id = uuid.UUID(str(job.payload["conexao_id"]))
        await sync.sync_connection(deps, job.tenant_id, connection_id)

    deps.jobs.register(NOTIFICATION, on_notification, policy="inbound_event", breaker=BREAKER)

    async def on_meeting_scheduled(job: Job) -> None:
        await scheduling.create_for_meeting(deps, job)

    deps.jobs.register(
        scheduling.OPERATION, on_meeting_scheduled, policy="calendar_create", breaker=BREAKER
    )
    keeper(deps).schedule(TOKEN_REFRESH_INTERVAL_S)

    async def renew() -> None:
        await channels.renew_due(deps)

    async def fallback() -> None:
        await sync.sync_stale(deps)

    deps.scheduler.every(channels.TASK, CHANNEL_RENEWAL_INTERVAL_S, renew)
    deps.scheduler.every(sync.FALLBACK_TASK, FALLBACK_SYNC_INTERVAL_S, fallback)
