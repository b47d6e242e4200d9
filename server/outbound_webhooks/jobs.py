"""Registration: the delivery job. No circuit breaker: one tenant's failing endpoint must not
hold back another's (each delivery is retried and dead-lettered on its own)."""

from __future__ import annotations

from server.bootstrap import Deps
from server.outbound_webhooks.delivery import deliver
from server.outbox import DELIVERY_OPERATION
from server.resilience.jobs import Job


def register_jobs(deps: Deps) -> None:
    async def handler(job: Job) -> None:
        await deliver(deps, job)

    deps.jobs.register(DELIVERY_OPERATION, handler, policy="outbound_webhook")
