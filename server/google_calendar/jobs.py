"""Registration only: the push-notification job and the periodic tasks of the room."""

from __future__ import annotations

import uuid

from server.bootstrap import Deps
from server.google_calendar import channels, scheduling, sync
from server.google_calendar.connection import keeper
from server.resilience.jobs import Job
from server.resilience.operations import GOOGLE_CALENDAR_CREATE, GOOGLE_CALENDAR_NOTIFICATION

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

    # Queued by the ingress (server/ingress/routes.py).
    deps.jobs.register(GOOGLE_CALENDAR_NOTIFICATION, on_notification)

    async def on_meeting_scheduled(job: Job) -> None:
        await scheduling.create_for_meeting(deps, job)

    deps.jobs.register(GOOGLE_CALENDAR_CREATE, on_meeting_scheduled)
    keeper(deps).schedule(TOKEN_REFRESH_INTERVAL_S)

    async def renew() -> None:
        await channels.renew_due(deps)

    async def fallback() -> None:
        await sync.sync_stale(deps)

    deps.scheduler.every(channels.TASK, CHANNEL_RENEWAL_INTERVAL_S, renew)
    deps.scheduler.every(sync.FALLBACK_TASK, FALLBACK_SYNC_INTERVAL_S, fallback)
