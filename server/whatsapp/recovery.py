"""A session WAHA reports FAILED is recovered as WAHA advises: restart it; if it fails again,
log it out and start it (a new QR); the session then waits for that QR with a message that
says so, the clear final state in which its owner must scan again.

The step taken is kept in `ultimo_erro` (what the owner reads), so a second FAILED after the
restart moves on to the logout instead of restarting forever.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import WhatsAppSession
from server.auth.caller import Caller, Role
from server.resilience.jobs import Job, enqueue
from server.resilience.operations import WAHA_RECOVER
from server.whatsapp import status as st
from server.whatsapp.connection import waha

if TYPE_CHECKING:
    import datetime as dt

    from server.bootstrap import Deps

RESTARTING = "WAHA reported FAILED: restarting the session"
UNLINKED = st.UNLINKED_MESSAGE
RELINKING = "WAHA could not restore the session after a restart: scan a new QR to reconnect"
STEPS = {"restart": ("restart",), "relink": ("logout", "start")}


async def on_failed(
    tx: AsyncSession, row: WhatsAppSession, previous_error: str | None, at: dt.datetime
) -> str | None:
    """Queues the next recovery step for a session WAHA just reported FAILED; returns it."""
    if row.status != st.FAILED or row.motivo_desconexao != st.SESSION_FAILED:
        return None
    if previous_error == RELINKING:
        return None  # already at the last step: the owner scans the new QR
    step = "relink" if previous_error == RESTARTING else "restart"
    row.ultimo_erro = RESTARTING if step == "restart" else RELINKING
    await tx.flush()
    await enqueue(
        tx,
        tenant_id=row.organizacao_id,
        operation=WAHA_RECOVER,
        payload={"sessao_id": str(row.id), "session": row.session_name, "step": step},
        idempotency_key=f"{WAHA_RECOVER.name}:{row.id}:{step}:{at.isoformat()}",
        destino=row.session_name,
    )
    return step


async def recover_session(deps: Deps, job: Job) -> None:
    """The WAHA_RECOVER job: runs its step unless the session moved on since."""
    caller = Caller(role=Role.SERVICE, tenant_id=job.tenant_id)
    async with deps.db.unit_of_work(caller) as tx:
        row = await tx.get(WhatsAppSession, uuid.UUID(str(job.payload["sessao_id"])))
        still_failed = row is not None and row.status == st.FAILED and not row.deletado_em
    if not still_failed:
        return
    client = await waha(deps)
    for action in STEPS.get(str(job.payload.get("step")), ()):
        await getattr(client, action)(str(job.payload["session"]))
