"""Registration of WhatsApp's queued work and periodic task (the handlers live beside it):
webhook events (webhook.py), sends (sending.py), WAHA clean-ups (cleanup.py), the recovery
of FAILED sessions (recovery.py), and the health check (health.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.resilience.jobs import Job
from server.resilience.operations import WAHA_CLEANUP, WAHA_EVENT, WAHA_RECOVER, WHATSAPP_SEND
from server.whatsapp import health, webhook
from server.whatsapp.cleanup import cleanup_session
from server.whatsapp.recovery import recover_session
from server.whatsapp.sending import send_message

if TYPE_CHECKING:
    from server.bootstrap import Deps


def register_jobs(deps: Deps) -> None:
    async def on_event(job: Job) -> None:
        await webhook.handle(deps, job)

    async def on_send(job: Job) -> None:
        await send_message(deps, job)

    async def on_cleanup(job: Job) -> None:
        await cleanup_session(deps, job)

    async def on_recover(job: Job) -> None:
        await recover_session(deps, job)

    async def health_check() -> None:
        await health.check_sessions(deps)

    deps.jobs.register(WAHA_EVENT, on_event)
    deps.jobs.register(WHATSAPP_SEND, on_send)
    deps.jobs.register(WAHA_CLEANUP, on_cleanup)
    deps.jobs.register(WAHA_RECOVER, on_recover)
    deps.scheduler.every(
        health.SCHEDULE_NAME, deps.settings.whatsapp_health_interval_seconds, health_check
    )
