"""The `capi_event` job: log the event once, then send the tenant's backlog to Meta.

Each job stands for one event (from PublishPipelineEvent or the Lead Ads path). Its first step
writes the event's log row (`log_conversions_api`, unique per event_id), pending, with the
Meta event to send (hashed user data only). Its second step locks its own row and up to 999
other pending rows of the tenant and sends them in one request: a backlog leaves in batches of
up to 1,000. Meta rejects a whole request for one bad event, so a rejected batch is split in
halves until the bad event stands alone; the rest of the batch is delivered. A refusal of the
request itself (an unknown pixel) is not split: the batch's events fail with its reason.
Each of Meta's answers is committed as it comes (the batch lock's transaction writes nothing),
so an attempt cut short by its time limit keeps what Meta already took and the retry sends
only the rest.

A job whose row another job already sent completes without calling Meta. Outages (5xx,
timeouts, rate limits) leave the rows pending and raise, so the worker retries the job on the
`capi_event` policy; on the last attempt the rows are closed as failed. A dead token marks the
configuration and alerts the tenant's admins; while it stays dead the events wait, pending,
and their jobs are postponed without spending attempts until a new token is saved
(server/conversions/parking.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Contact, ConversionsApiConfig, ConversionsApiLog, PendingEvent
from server.bootstrap import Deps
from server.conversions import config as capi_config
from server.conversions import parking
from server.conversions.errors import BatchInFlight
from server.conversions.events import (
    STALE_REASON,
    is_stale,
    meta_event,
    summary,
)
from server.conversions.identity import contact_user_data
from server.providers.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderPermissionDenied,
    ProviderRejected,
)
from server.providers.meta_capi import MAX_EVENTS_PER_REQUEST, EventsReceived, MetaCapiClient
from server.resilience.alerts import connection_broken
from server.resilience.jobs import Job
from server.resilience.worker import tenant_service
from server.security.redaction import redact

CONNECTION_TYPE = "META_CONVERSIONS_API"
_MAX_TEXT = 500
_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtext(:key))")
_BUSY_RETRY_S = 0.5
_LOCK_WAIT_S = 0.02
_LOCK_TRIES = 150  # 3 s


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    status: int
    body: str
    fbtrace_id: str
    events_received: int = 0


async def handle_capi_event(deps: Deps, job: Job) -> None:
    event_id = await _record(deps, job)
    if event_id is not None:
        await send_backlog(deps, job, event_id)


# -- step 1: the event's log row ----------------------------------------------------------


async def _record(deps: Deps, job: Job) -> str | None:
    """Writes the event's log row (once); returns its event_id when there is something to send."""
    payload = job.payload
    now = deps.clock.now()
    crm_event = str(payload.get("crm_event") or "")
    async with deps.db.unit_of_work(tenant_service(job.tenant_id)) as session:
        cfg = await capi_config.load(session)
        closed = _not_sent_because(cfg, crm_event)
        if closed is not None:
            # Queued before the pixel was configured or the event switched off: the job
            # completes with the reason, nothing goes to Meta.
            await session.execute(
                update(PendingEvent).where(PendingEvent.id == job.id).values(ultimo_erro=closed)
            )
            return None
        assert cfg is not None
        event = await _event_of(session, job)
        if event is None:
            return None
        event_id = str(event["event_id"])
        if crm_event == "lead" and not await _claim_lead(session, payload, event_id):
            return None  # one Lead per contact: another event already carried it
        stale = await record_pending(session, job.tenant_id, cfg, event, payload, now)
    return None if stale else event_id


def _not_sent_because(cfg: ConversionsApiConfig | None, crm_event: str) -> str | None:
    if cfg is None:
        return "not sent: the Conversions API is not configured"
    if not cfg.ativo:
        return "not sent: the Conversions API is switched off"
    if crm_event in capi_config.EVENT_NAMES and not capi_config.enabled(cfg, crm_event):
        return f"not sent: the {crm_event} event is switched off"
    return None


async def record_pending(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    cfg: ConversionsApiConfig,
    event: Mapping[str, Any],
    facts: Mapping[str, Any],
    now: dt.datetime,
) -> bool:
    """Logs `event` as pending (once per event_id), in the caller's transaction; an event
    already older than 7 days is logged as failed with the reason (a pending row of it is
    closed so). Returns True when stale.

    `facts`: `entidade_tipo`, `entidade_id` (or `contato_id`) and `resumo` for the summary.
    """
    event_time = dt.datetime.fromtimestamp(int(event["event_time"]), dt.UTC)
    stale = is_stale(event_time, now)
    entity_id = facts.get("entidade_id") or facts.get("contato_id")
    values: dict[str, Any] = {
        "organizacao_id": tenant_id,
        "config_id": cfg.id,
        "event_name": event["event_name"],
        "event_time": event_time,
        "event_id": str(event["event_id"]),
        "entidade_tipo": facts.get("entidade_tipo") or "contato",
        "entidade_id": uuid.UUID(str(entity_id)) if entity_id else None,
        "payload_resumo": summary(event, facts.get("resumo")),
        "status": "failed" if stale else "pending",
        "response_body": STALE_REASON if stale else None,
        "evento_meta": None if stale else dict(event),
        "teste": False,
    }
    new = insert(ConversionsApiLog).values(**values)
    keys, live = ["organizacao_id", "event_id"], text("NOT teste")
    if stale:
        # Logged pending at publish time, then went stale while its job waited: closed now.
        statement = new.on_conflict_do_update(
            index_elements=keys,
            index_where=live,
            set_={"status": "failed", "response_body": STALE_REASON, "evento_meta": None},
            where=ConversionsApiLog.__table__.c.status == "pending",
        )
    else:
        statement = new.on_conflict_do_nothing(index_elements=keys, index_where=live)
    await session.execute(statement)
    return stale


async def _event_of(session: AsyncSession, job: Job) -> dict[str, Any] | None:
    """The Meta event: built at publish time, or (Lead Ads path) from the contact record."""
    built = job.payload.get("event")
    if isinstance(built, Mapping):
        return dict(built)
    contato_id = job.payload.get("contato_id")
    contact = await session.get(Contact, uuid.UUID(str(contato_id))) if contato_id else None
    if contact is None:
        return None
    when = dt.datetime.fromtimestamp(int(job.payload["event_time"]), dt.UTC)
    return meta_event(
        crm_event=str(job.payload.get("crm_event") or "lead"),
        event_id=job.idempotency_key,
        event_time=when,
        user_data=contact_user_data(contact, lead_id=str(job.payload.get("lead_id") or "")),
    )


async def _claim_lead(session: AsyncSession, payload: Mapping[str, Any], event_id: str) -> bool:
    contato_id = payload.get("contato_id")
    if not contato_id:
        return True
    claimed = await session.scalar(
        update(Contact)
        .where(
            Contact.id == uuid.UUID(str(contato_id)),
            (Contact.capi_lead_event_id.is_(None)) | (Contact.capi_lead_event_id == event_id),
        )
        .values(capi_lead_event_id=event_id)
        .returning(Contact.id)
    )
    return claimed is not None


# -- step 2: the backlog, in batches ------------------------------------------------------


@dataclass(frozen=True)
class _Pending:
    id: uuid.UUID
    event: dict[str, Any]


@dataclass(frozen=True)
class _Batch:
    cfg: ConversionsApiConfig  # detached: read only
    token: str
    rows: list[_Pending]


Answered = Callable[[list[_Pending], _Outcome], Awaitable[None]]


async def send_backlog(deps: Deps, job: Job, event_id: str) -> None:
    caller = tenant_service(job.tenant_id)
    failure: ProviderError | None = None
    answered: set[uuid.UUID] = set()
    async with deps.db.unit_of_work(caller) as lock:
        # One batch per tenant at a time, or concurrent jobs would split a backlog into
        # many small requests. Held until this job is done; a job that finds it taken waits
        # briefly. This transaction writes nothing: every answer of Meta is committed on its
        # own as it comes, so an attempt cut short (a timeout) keeps what Meta already took.
        if not await _batch_lock(lock, job.tenant_id):
            raise BatchInFlight("this tenant's backlog is being sent", retry_after=_BUSY_RETRY_S)
        batch = await _claim(deps, job, event_id)
        if batch is None:
            return

        async def keep(rows: list[_Pending], outcome: _Outcome) -> None:
            await _save_answer(deps, job, batch.cfg, rows, outcome)
            answered.update(row.id for row in rows)

        client = capi_config.capi_client(deps, guarded=False)
        try:
            await _deliver(client, batch.cfg.pixel_id, batch.token, batch.rows, keep)
        except ProviderError as exc:
            failure = exc
        if failure is not None:
            left = [row.id for row in batch.rows if row.id not in answered]
            await _save_failure(deps, job, batch.cfg, left, failure)
    if isinstance(failure, ProviderAuthError | ProviderPermissionDenied):
        raise parking.parked()
    if failure is not None:
        raise failure


async def _claim(deps: Deps, job: Job, event_id: str) -> _Batch | None:
    """The job's own event and up to 999 other pending ones, stale ones closed; None when
    there is nothing to send (another job's batch already settled the event)."""
    async with deps.db.unit_of_work(tenant_service(job.tenant_id)) as session:
        own = await session.scalar(
            select(ConversionsApiLog)
            .where(ConversionsApiLog.event_id == event_id, ConversionsApiLog.teste.is_(False))
            .with_for_update()
        )
        if own is not None and own.status == "failed" and own.evento_meta is not None:
            # It failed for an outage or a refused token, not for its content: this job (its
            # own, or one an admin retried from the dead-letter queue) sends it again.
            own.status = "pending"
        if own is None or own.status != "pending":
            return None
        cfg = await capi_config.load(session)
        if cfg is None or not cfg.ativo:
            return None
        if parking.is_dead(cfg):
            raise parking.parked()  # the row stays pending; a new token releases the job
        rows = [own, *await _others(session, own.id)]
        rows = await _close_stale(session, rows, deps.clock.now())
        pending = [_Pending(row.id, dict(row.evento_meta or {})) for row in rows]
        token = capi_config.access_token(deps, cfg)
    return _Batch(cfg, token, pending) if pending else None


async def _save_answer(
    deps: Deps, job: Job, cfg: ConversionsApiConfig, rows: list[_Pending], outcome: _Outcome
) -> None:
    """Meta's answer for one request, committed at once."""
    now = deps.clock.now()
    async with deps.db.unit_of_work(tenant_service(job.tenant_id)) as session:
        await session.execute(
            update(ConversionsApiLog)
            .where(ConversionsApiLog.id.in_([row.id for row in rows]))
            .values(
                tentativas=ConversionsApiLog.tentativas + 1,
                status="sent" if outcome.ok else "failed",
                response_code=outcome.status,
                fbrq_event_id=outcome.fbtrace_id or None,
                response_body=(
                    f'{{"events_received": {outcome.events_received}}}'
                    if outcome.ok
                    else _text(outcome.body)
                ),
                evento_meta=None,
                enviado_em=now,
            )
        )
        await _count(session, cfg, len(rows), outcome, now)


async def _save_failure(
    deps: Deps, job: Job, cfg: ConversionsApiConfig, left: list[uuid.UUID], failure: ProviderError
) -> None:
    """The events Meta did not answer for: retried by the job, closed on its last attempt;
    a refused token is not their fault (they wait for a new one, untouched)."""
    async with deps.db.unit_of_work(tenant_service(job.tenant_id)) as session:
        if isinstance(failure, ProviderAuthError | ProviderPermissionDenied):
            await _token_refused(session, cfg, failure)
            return
        values: dict[str, Any] = {
            "tentativas": ConversionsApiLog.tentativas + 1,
            "response_code": failure.status_code,
            "response_body": _text(str(failure)),
        }
        if job.attempt >= job.max_attempts or _final(failure):
            values["status"] = "failed"  # kept sendable (evento_meta) for a retry
        await session.execute(
            update(ConversionsApiLog).where(ConversionsApiLog.id.in_(left)).values(**values)
        )


async def _batch_lock(session: AsyncSession, tenant_id: uuid.UUID) -> bool:
    """The tenant's batch lock, waiting a little for a batch in flight (whose answer usually
    settles this job's event too) before handing the job back to the queue."""
    for _ in range(_LOCK_TRIES):
        if await session.scalar(_TRY_LOCK, {"key": f"capi:{tenant_id}"}):
            return True
        await asyncio.sleep(_LOCK_WAIT_S)
    return False


async def _others(session: AsyncSession, own_id: uuid.UUID) -> Sequence[ConversionsApiLog]:
    """Other pending events of the tenant, oldest first; rows another batch holds are skipped."""
    rows = await session.scalars(
        select(ConversionsApiLog)
        .where(
            ConversionsApiLog.status == "pending",
            ConversionsApiLog.teste.is_(False),
            ConversionsApiLog.evento_meta.is_not(None),
            ConversionsApiLog.id != own_id,
        )
        .order_by(ConversionsApiLog.criado_em)
        .limit(MAX_EVENTS_PER_REQUEST - 1)
        .with_for_update(skip_locked=True)
    )
    return list(rows)


async def _close_stale(
    session: AsyncSession, rows: list[ConversionsApiLog], now: dt.datetime
) -> list[ConversionsApiLog]:
    """A backlog that waited past 7 days (an open breaker, a dead token) is closed, not sent."""
    fresh = []
    for row in rows:
        if is_stale(row.event_time, now):
            row.status, row.response_body, row.evento_meta = "failed", STALE_REASON, None
        else:
            fresh.append(row)
    await session.flush()
    return fresh


async def _deliver(
    client: MetaCapiClient, pixel_id: str, token: str, rows: list[_Pending], answered: Answered
) -> None:
    """Sends `rows`; a rejected batch is bisected so only the bad event fails. Each answer
    goes to `answered` as it comes; outages raise."""
    try:
        answer: EventsReceived = await client.send_events(
            pixel_id, token, [row.event for row in rows]
        )
    except ProviderRejected as exc:
        if len(rows) == 1 or _request_level(exc):
            # One bad event alone, or a refusal of the request itself (an unknown pixel):
            # splitting would only repeat it, so the events fail with Meta's reason.
            outcome = _Outcome(False, exc.status_code or 400, str(exc), exc.fbtrace_id or "")
            await answered(rows, outcome)
            return
        middle = len(rows) // 2
        await _deliver(client, pixel_id, token, rows[:middle], answered)
        await _deliver(client, pixel_id, token, rows[middle:], answered)
        return
    await answered(rows, _Outcome(True, 200, "", answer.fbtrace_id, answer.events_received))


def _request_level(exc: ProviderRejected) -> bool:
    """Meta refuses a bad event with code 100 (invalid parameter); an unknown or inaccessible
    object (subcode 33) or any other code concerns the request, whatever its events."""
    return str(exc.provider_code) != "100" or exc.provider_subcode == 33


async def _count(
    session: AsyncSession,
    cfg: ConversionsApiConfig,
    events: int,
    outcome: _Outcome,
    now: dt.datetime,
) -> None:
    values: dict[str, Any] = {
        "total_eventos_enviados": ConversionsApiConfig.total_eventos_enviados + events,
        "total_eventos_sucesso": ConversionsApiConfig.total_eventos_sucesso
        + (events if outcome.ok else 0),
        "ultimo_evento_enviado": now,
    }
    if not outcome.ok:
        values["ultimo_erro"] = _text(outcome.body)
    await session.execute(
        update(ConversionsApiConfig).where(ConversionsApiConfig.id == cfg.id).values(**values)
    )


def _final(failure: ProviderError | None) -> bool:
    return failure is not None and not failure.retryable


async def _token_refused(
    session: AsyncSession, cfg: ConversionsApiConfig, failure: ProviderError
) -> None:
    revoked = failure.provider_subcode == 458
    await connection_broken(
        session,
        model=ConversionsApiConfig,
        connection_id=cfg.id,
        tenant_id=cfg.organizacao_id,
        owner_id=None,
        connection_type=CONNECTION_TYPE,
        error=str(failure),
        status="revoked" if revoked else "expired",
    )


def _text(value: str) -> str:
    return redact(value)[:_MAX_TEXT]
