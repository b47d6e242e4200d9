"""Job handlers and periodic tasks of Lead Ads, registered at start-up."""

from __future__ import annotations

from server.bootstrap import Deps
from server.meta_leads.backfill import INTERVAL_S, run_backfill
from server.meta_leads.health import TASK as HEALTH_TASK
from server.meta_leads.health import run_health_probe
from server.meta_leads.leads import handle_leadgen
from server.meta_leads.oauth import revoke_at_meta
from server.resilience.jobs import Job
from server.resilience.operations import META_LEADGEN, META_REVOKE


def register_jobs(deps: Deps) -> None:
    async def leadgen(job: Job) -> None:
        await handle_leadgen(deps, job)

    async def backfill() -> None:
        await run_backfill(deps)

    async def health_probe() -> None:
        await run_health_probe(deps)

    async def revoke(job: Job) -> None:
        await revoke_at_meta(deps, job)

    deps.jobs.register(META_LEADGEN, leadgen)
    deps.jobs.register(META_REVOKE, revoke)
    deps.scheduler.every("meta_leads.backfill", INTERVAL_S, backfill)
    deps.scheduler.every(HEALTH_TASK, deps.settings.meta_health_interval_seconds, health_probe)
