"""Job handlers of Custom Audiences, registered at start-up."""

from __future__ import annotations

from server.audiences.removal import handle_remove
from server.audiences.sync import handle_delete, handle_sync
from server.bootstrap import Deps
from server.resilience.jobs import Job
from server.resilience.operations import AUDIENCE_DELETE, AUDIENCE_REMOVE, AUDIENCE_SYNC


def register_jobs(deps: Deps) -> None:
    async def sync(job: Job) -> None:
        await handle_sync(deps, job)

    async def delete(job: Job) -> None:
        await handle_delete(deps, job)

    async def remove(job: Job) -> None:
        await handle_remove(deps, job)

    # Spec "Custom Audience Sync": 3 tries, 5 s, exponential, 60 s timeout, for all three.
    deps.jobs.register(AUDIENCE_SYNC, sync)
    deps.jobs.register(AUDIENCE_DELETE, delete)
    deps.jobs.register(AUDIENCE_REMOVE, remove)
