"""The `audience_sync` and `audience_delete` jobs.

A sync sends the audience's pending members (or, for a full resync, every matching contact:
those a pipeline event of the audience's trigger named, or every live contact for a manual
audience) as SHA-256 hashes in Meta's multi-key schema, at most 10,000 rows per request. An
upload in several requests carries Meta's `session` (one id, `batch_seq` from 1, the last
with `last_batch_flag`). Members are marked synced chunk by chunk, so a retry after an outage
sends only what is left. Afterwards the size range Meta reports is stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Contact, CustomAudience, CustomAudienceMember, PipelineEventRecord
from server.audiences.connection import active_connection, mark_broken, user_token
from server.audiences.errors import SyncBusy
from server.audiences.manage import client
from server.bootstrap import Deps
from server.providers.errors import ProviderAuthError, ProviderError, ProviderRejected
from server.providers.meta_audiences import (
    MAX_ROWS_PER_REQUEST,
    MetaAudiencesClient,
    UploadSession,
)
from server.providers.meta_user_data import hash_value
from server.resilience.jobs import Job
from server.resilience.worker import tenant_service
from server.security.redaction import redact

SCHEMA = ("EMAIL", "PHONE")
SYNC_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtext(:key))")
_INSERT_CHUNK = 2000


def sync_lock_key(audience_key: object) -> str:
    """The advisory lock held while the audience's members are uploaded (and removed)."""
    return f"audience:{audience_key}"


async def handle_sync(deps: Deps, job: Job) -> None:
    audience_key = uuid.UUID(str(job.payload["audience_id"]))
    caller = tenant_service(job.tenant_id)
    async with deps.db.unit_of_work(caller) as session:
        audience = await session.get(CustomAudience, audience_key)
        if audience is None or audience.deletado_em is not None or audience.ativo is False:
            return
        meta_id = audience.audience_id
        if meta_id is None:
            return  # still being created: members reach Meta once it is ready
        token = user_token(deps, await active_connection(session))
        if job.payload.get("full_resync"):
            await _add_matching(session, job.tenant_id, audience)
    api = client(deps)
    try:
        await _send_pending(deps, job, audience_key, meta_id, api, token)
        size = await api.size(token, meta_id)
    except ProviderError as exc:
        async with deps.db.unit_of_work(caller) as session:
            if isinstance(exc, ProviderAuthError):
                await mark_broken(session, exc)
            await session.execute(
                update(CustomAudience)
                .where(CustomAudience.id == audience_key)
                .values(
                    ultimo_sync=func.now(),
                    ultimo_sync_sucesso=False,
                    ultimo_erro=redact(str(exc))[:500],
                )
            )
        raise
    async with deps.db.unit_of_work(caller) as session:
        synced = await session.scalar(
            select(func.count()).where(
                CustomAudienceMember.audience_id == audience_key,
                CustomAudienceMember.sincronizado.is_(True),
            )
        )
        await session.execute(
            update(CustomAudience)
            .where(CustomAudience.id == audience_key)
            .values(
                ultimo_sync=func.now(),
                ultimo_sync_sucesso=True,
                ultimo_erro=None,
                total_usuarios=int(synced or 0),
                approximate_count_lower_bound=size.lower,
                approximate_count_upper_bound=size.upper,
            )
        )


def matching_contacts(
    audience: CustomAudience,
) -> Select[uuid.UUID, str | None, str | None]:
    """Live contacts that did not withdraw consent; for an event audience, only those a
    pipeline event of its trigger named."""
    query = select(Contact.id, Contact.email, Contact.telefone).where(
        Contact.deletado_em.is_(None), Contact.consentimento.is_not(False)
    )
    if audience.tipo_sincronizacao == "evento" and audience.evento_gatilho:
        named = select(PipelineEventRecord.contato_id).where(
            PipelineEventRecord.evento == audience.evento_gatilho
        )
        query = query.where(Contact.id.in_(named))
    return query


async def _add_matching(
    session: AsyncSession, tenant_id: uuid.UUID, audience: CustomAudience
) -> None:
    """Every contact the audience should hold becomes a pending member (hashes refreshed)."""
    query = matching_contacts(audience)
    rows: list[dict[str, Any]] = []
    for contato_id, email, phone in await session.execute(query):
        email_hash = hash_value("em", email) if email else ""
        phone_hash = hash_value("ph", phone) if phone else ""
        if email_hash or phone_hash:
            rows.append(
                {
                    "organizacao_id": tenant_id,
                    "audience_id": audience.id,
                    "contato_id": contato_id,
                    "email_hash": email_hash or None,
                    "phone_hash": phone_hash or None,
                    "sincronizado": False,
                }
            )
    for start in range(0, len(rows), _INSERT_CHUNK):
        statement = insert(CustomAudienceMember).values(rows[start : start + _INSERT_CHUNK])
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["audience_id", "contato_id"],
                set_={
                    "email_hash": statement.excluded.email_hash,
                    "phone_hash": statement.excluded.phone_hash,
                    "sincronizado": False,
                    "erro_sincronizacao": None,
                },
            )
        )


async def _send_pending(
    deps: Deps,
    job: Job,
    audience_key: uuid.UUID,
    meta_id: str,
    api: MetaAudiencesClient,
    token: str,
) -> None:
    caller = tenant_service(job.tenant_id)
    async with deps.db.unit_of_work(caller) as held:
        # One sync per audience at a time (held until this block ends); another job waits.
        if not await held.scalar(SYNC_LOCK, {"key": sync_lock_key(audience_key)}):
            raise SyncBusy("this audience is being synced", retry_after=1.0)
        pending = list(
            await held.execute(
                select(
                    CustomAudienceMember.id,
                    CustomAudienceMember.email_hash,
                    CustomAudienceMember.phone_hash,
                )
                .where(
                    CustomAudienceMember.audience_id == audience_key,
                    CustomAudienceMember.sincronizado.is_not(True),
                    (CustomAudienceMember.email_hash.is_not(None))
                    | (CustomAudienceMember.phone_hash.is_not(None)),
                )
                .order_by(CustomAudienceMember.id)
            )
        )
        chunks = [
            pending[i : i + MAX_ROWS_PER_REQUEST]
            for i in range(0, len(pending), MAX_ROWS_PER_REQUEST)
        ]
        # One id per attempt: Meta groups the requests of one upload by it.
        session_id = (job.id.int + job.attempt) % (2**62)
        for seq, chunk in enumerate(chunks, start=1):
            upload = (
                UploadSession(session_id, seq, seq == len(chunks), len(pending))
                if len(chunks) > 1
                else None
            )
            rows = [[email or "", phone or ""] for _, email, phone in chunk]
            ids = [m for m, _, _ in chunk]
            try:
                await api.upload(token, meta_id, SCHEMA, rows, session=upload)
            except ProviderRejected as exc:
                async with deps.db.unit_of_work(caller) as session:
                    await _mark(session, ids, error=redact(str(exc))[:500])
                raise
            # Committed chunk by chunk: a retry after an outage sends only what is left.
            async with deps.db.unit_of_work(caller) as session:
                await _mark(session, ids, error=None)


async def _mark(session: AsyncSession, ids: Sequence[uuid.UUID], *, error: str | None) -> None:
    values: dict[str, Any] = {"erro_sincronizacao": error}
    if error is None:
        values |= {"sincronizado": True, "sincronizado_em": func.now()}
    await session.execute(
        update(CustomAudienceMember).where(CustomAudienceMember.id.in_(ids)).values(**values)
    )


async def handle_delete(deps: Deps, job: Job) -> None:
    """Deletes the audience at Meta; one already gone there counts as done."""
    async with deps.db.unit_of_work(tenant_service(job.tenant_id)) as session:
        token = user_token(deps, await active_connection(session))
    try:
        await client(deps).delete(token, str(job.payload["meta_audience_id"]))
    except ProviderRejected as exc:
        if exc.provider_code != 100:
            raise
    except ProviderAuthError as exc:
        async with deps.db.unit_of_work(tenant_service(job.tenant_id)) as session:
            await mark_broken(session, exc)
        raise
