"""Registration: the delivery job. No circuit breaker: one tenant's failing endpoint must not
hold back another's (each delivery is retried and dead-lettered on its own)."""

from __future__ import annotations

from server.bootstrap import Deps
from server.outbound_webhooks.delivery import deliver
from server.outbound_webhooks.pinned import tls_context
from server.resilience.jobs import Job
from server.resilience.operations import OUTBOUND_WEBHOOK


def register_jobs(deps: Deps) -> None:
    tls = tls_context()

    async def handler(job: Job) -> None:
        await deliver(deps, job, tls)

    deps.jobs.register(OUTBOUND_WEBHOOK, handler)
