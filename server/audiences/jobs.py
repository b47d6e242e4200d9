"""Job handlers of Custom Audiences, registered at start-up."""

from __future__ import annotations

from server.audiences.manage import DELETE_OPERATION
from server.audiences.removal import REMOVE_OPERATION, handle_remove
from server.audiences.sync import SYNC_OPERATION, handle_delete, handle_sync
from server.bootstrap import Deps
from server.resilience.jobs import Job


def register_jobs(deps: Deps) -> None:
    async def sync(job: Job) -> None:
        await handle_sync(deps, job)

    async def delete(job: Job) -> None:
        await handle_delete(deps, job)

    async def remove(job: Job) -> None:
        await handle_remove(deps, job)

    # Spec "Custom Audience Sync": 3 tries, 5 s, exponential, 60 s timeout, for both.
    deps.jobs.register(SYNC_OPERATION, sync, policy="audience_sync", breaker="meta_audiences")
    deps.jobs.register(DELETE_OPERATION, delete, policy="audience_sync", breaker="meta_audiences")
    deps.jobs.register(REMOVE_OPERATION, remove, policy="audience_sync", breaker="meta_audiences")
