"""WAHA calls that must happen after a session ends (stop, logout, delete), queued when WAHA
could not take them at the time, and the job that makes them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import WhatsAppSession
from server.auth.caller import Caller, Role
from server.providers.errors import ProviderError
from server.providers.waha import is_not_found
from server.resilience.jobs import Job, enqueue
from server.resilience.operations import WAHA_CLEANUP
from server.whatsapp import status as st
from server.whatsapp.connection import waha

if TYPE_CHECKING:
    from server.bootstrap import Deps

_ACTIONS = ("stop", "logout", "delete")


async def enqueue_cleanup(
    tx: AsyncSession, row: WhatsAppSession, actions: Sequence[str]
) -> uuid.UUID | None:
    """Queue WAHA calls that must happen even if WAHA is down now (stop, logout, delete)."""
    await tx.flush()
    return await enqueue(
        tx,
        tenant_id=row.organizacao_id,
        operation=WAHA_CLEANUP,
        payload={"sessao_id": str(row.id), "session": row.session_name, "actions": list(actions)},
        # One per end of a session: the reason and time say which end it was.
        idempotency_key=f"{WAHA_CLEANUP.name}:{row.id}:{row.motivo_desconexao}:"
        f"{row.desconectado_em.isoformat() if row.desconectado_em else ''}",
        destino=row.session_name,
    )


async def cleanup_session(deps: Deps, job: Job) -> None:
    caller = Caller(role=Role.SERVICE, tenant_id=job.tenant_id)
    async with deps.db.unit_of_work(caller) as tx:
        row = await tx.get(WhatsAppSession, uuid.UUID(str(job.payload["sessao_id"])))
        still_ended = (
            row is not None
            and row.status in (st.DISCONNECTED, st.FAILED)
            and row.motivo_desconexao in st.DELIBERATE
        )
    if not still_ended:
        return  # started again since: the cleanup must not tear the new session down
    client = await waha(deps)
    for action in job.payload.get("actions") or ():
        if action not in _ACTIONS:
            continue
        try:
            await getattr(client, action)(str(job.payload["session"]))
        except ProviderError as exc:
            if not is_not_found(exc):
                raise
