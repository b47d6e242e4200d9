"""What a dead letter means beyond its row: an audit entry, an alert to the tenant's admins and
a JOB_FAILED event, in the transaction that dead-letters the job.

The worker takes this as a hook (`Worker(on_dead_letter=...)`), so the queue's mechanics do not
depend on how the product tells people.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import record_audit
from server.auth.caller import Caller
from server.events import Event, publish
from server.resilience.alert_store import raise_alert
from server.resilience.queue import ClaimedJob

# (the dead-lettering transaction, the worker's caller, the job, its facts) -> None
DeadLetterHook = Callable[[AsyncSession, Caller, ClaimedJob, Mapping[str, object]], Awaitable[None]]


async def announce_dead_letter(
    session: AsyncSession, caller: Caller, job: ClaimedJob, facts: Mapping[str, object]
) -> None:
    await record_audit(
        session,
        caller,
        "job.dead_lettered",
        entity_type="eventos_pendentes",
        entity_id=job.id,
        details=dict(facts),
    )
    await raise_alert(
        session,
        tenant_id=job.tenant_id,
        audience="tenant_admin",
        kind="permanent_failure",
        severity="warning",
        message=f"{job.tipo}: falhou apos {facts['tentativas']} tentativa(s): {facts['erro']}",
        details={
            "titulo": "Evento falhou definitivamente",
            "entidade_tipo": "eventos_pendentes",
            "entidade_id": str(job.id),
            **facts,
        },
    )
    await publish(session, Event("JOB_FAILED", job.tenant_id, None, {"id": str(job.id), **facts}))
