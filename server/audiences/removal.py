"""Contacts leaving: a contact deleted in the CRM directory, or whose marketing consent was
withdrawn, leaves every audience at Meta (`DELETE /{audience}/users`). Event-triggered
audiences otherwise only add.

`remove_contact` runs in the directory's transaction: the member rows go, and an
`audience_remove` job (AUDIENCE_REMOVE) per audience carries the hashes Meta must drop, so a
removal is never lost and never depends on the contact's data still being there. Every member
with hashes is removed, synced or not: a full resync marks members unsynced before uploading
them, and removing a hash Meta does not hold is harmless.

The removal takes the audience's sync lock (server/audiences/sync.py) before calling Meta: an
upload in flight that read the member before it was deleted finishes first, and the removal
then takes the contact out again.
"""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import CustomAudience, CustomAudienceMember
from server.audiences.connection import active_connection, mark_broken, user_token
from server.audiences.errors import SyncBusy
from server.audiences.manage import client
from server.audiences.sync import SCHEMA, SYNC_LOCK, sync_lock_key
from server.bootstrap import Deps
from server.providers.errors import ProviderAuthError
from server.resilience.jobs import Job, enqueue
from server.resilience.operations import AUDIENCE_REMOVE
from server.resilience.worker import tenant_service


async def remove_contact(session: AsyncSession, tenant_id: uuid.UUID, contato_id: uuid.UUID) -> int:
    """Schedules the contact's removal from every audience it was sent to; returns how many."""
    members = list(
        await session.execute(
            select(CustomAudienceMember, CustomAudience.audience_id)
            .join(CustomAudience, CustomAudience.id == CustomAudienceMember.audience_id)
            .where(CustomAudienceMember.contato_id == contato_id)
        )
    )
    scheduled = 0
    for member, meta_id in members:
        if member.email_hash or member.phone_hash:
            await enqueue(
                session,
                tenant_id=tenant_id,
                operation=AUDIENCE_REMOVE,
                payload={
                    "meta_audience_id": meta_id,
                    "row": [member.email_hash or "", member.phone_hash or ""],
                },
                idempotency_key=f"audience-remove:{member.id}",
                destino=str(member.audience_id),
            )
            scheduled += 1
    if members:
        await session.execute(
            delete(CustomAudienceMember).where(CustomAudienceMember.contato_id == contato_id)
        )
    return scheduled


async def handle_remove(deps: Deps, job: Job) -> None:
    caller = tenant_service(job.tenant_id)
    try:
        async with deps.db.unit_of_work(caller) as held:
            if not await held.scalar(SYNC_LOCK, {"key": sync_lock_key(job.destino)}):
                raise SyncBusy("this audience is being synced", retry_after=1.0)
            token = user_token(deps, await active_connection(held))
            await client(deps).upload(
                token,
                str(job.payload["meta_audience_id"]),
                SCHEMA,
                [list(job.payload["row"])],
                remove=True,
            )
    except ProviderAuthError as exc:
        async with deps.db.unit_of_work(caller) as session:
            await mark_broken(session, exc)
        raise
