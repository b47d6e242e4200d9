"""Job handlers and periodic tasks of Lead Ads, registered at start-up."""

from __future__ import annotations

from server.bootstrap import Deps
from server.meta_leads.backfill import INTERVAL_S, run_backfill
from server.meta_leads.health import TASK as HEALTH_TASK
from server.meta_leads.health import run_health_probe
from server.meta_leads.leads import OPERATION, handle_leadgen
from server.resilience.jobs import Job


def register_jobs(deps: Deps) -> None:
    async def leadgen(job: Job) -> None:
        await handle_leadgen(deps, job)

    async def backfill() -> None:
        await run_backfill(deps)

    async def health_probe() -> None:
        await run_health_probe(deps)

    # Spec "Lead Ads Webhook Process": 3 tries, 1 s, linear, 10 s timeout.
    deps.jobs.register(OPERATION, leadgen, policy="lead_processing", breaker="meta_graph")
    scheduler = getattr(deps, "scheduler", None)
    if scheduler is not None:
        scheduler.every("meta_leads.backfill", INTERVAL_S, backfill)
        scheduler.every(HEALTH_TASK, deps.settings.meta_health_interval_seconds, health_probe)
