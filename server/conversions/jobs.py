"""Job handlers of the Conversions API, registered at start-up."""

from __future__ import annotations

from server.bootstrap import Deps
from server.conversions.delivery import handle_capi_event
from server.resilience.jobs import Job
from server.resilience.operations import CAPI_EVENT


def register_jobs(deps: Deps) -> None:
    async def capi_event(job: Job) -> None:
        await handle_capi_event(deps, job)

    # Spec "Envio CAPI": 5 tries, 2 s, exponential, 30 s timeout; the tenant's
    # desativar_retry_capi / capi_max_retries apply (server.resilience.policies).
    deps.jobs.register(CAPI_EVENT, capi_event)
