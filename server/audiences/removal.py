"""Contacts leaving: a contact deleted in the CRM directory, or whose marketing consent was
withdrawn, leaves every audience at Meta (`DELETE /{audience}/users`). Event-triggered
audiences otherwise only add.

`remove_contact` runs in the directory's transaction: the member rows go, and an
`audience_remove` job (AUDIENCE_REMOVE) per audience carries the hashes Meta must drop, so a
removal is never lost and never depends on the contact's data still being there.
"""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import CustomAudience, CustomAudienceMember
from server.audiences.connection import active_connection, mark_broken, user_token
from server.audiences.manage import client
from server.audiences.sync import SCHEMA
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
        if member.sincronizado and (member.email_hash or member.phone_hash):
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
    async with deps.db.unit_of_work(tenant_service(job.tenant_id)) as session:
        token = user_token(deps, await active_connection(session))
    try:
        await client(deps).upload(
            token,
            str(job.payload["meta_audience_id"]),
            SCHEMA,
            [list(job.payload["row"])],
            remove=True,
        )
    except ProviderAuthError as exc:
        async with deps.db.unit_of_work(tenant_service(job.tenant_id)) as session:
            await mark_broken(session, exc)
        raise
