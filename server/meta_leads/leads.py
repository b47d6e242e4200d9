"""A lead becomes a contact and an opportunity (spec 2.2 step 4).

The job `meta_leadgen` (enqueued by the webhook ingress, or by the backfill) carries only ids:
the lead's answers are fetched from Graph with the page token (webhooks carry no PII), mapped
to CRM fields, and written in one transaction with the ledger row that makes the lead
idempotent (`leads_meta_recebidos`, unique per leadgen id): a webhook redelivery, a backfill
and a second run after a lost lease all find it and stop.

A dead token (Graph 190) is no reason to lose a lead: the connection is marked, the admins
alerted, and the job is *parked*: a copy waits in the queue at a far-future date, and the
OAuth callback makes every parked lead due again when Meta is reconnected.

Nor is an outage of Graph: the spec's policy ("Lead Ads Webhook Process": 3 attempts, 1 s
linear) spends its attempts within seconds, and a minute of 5xx answers would dead-letter the
lead. Meta itself retries an unanswered webhook for 36 hours; once we have answered it, the
lead is ours to keep as long. So a lead whose last attempt met an outage is *deferred*: a copy
with a fresh budget is due again after the spec's longest backoff (60 s), for up to 36 hours
after its first deferral.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    Contact,
    LeadAdsForm,
    MetaConnection,
    MetaLeadReceived,
    MetaPage,
    Opportunity,
    Organization,
    User,
    WebhookInbox,
)
from server.bootstrap import Deps
from server.conversions import event_enabled, load_config
from server.crm_directory import distribution_pool
from server.events import Event, publish
from server.meta_leads.connection import (
    CONNECTION_TYPE,
    PARKED_UNTIL,
    graph,
    mark_broken,
    page_token,
    tenant_service,
)
from server.meta_leads.contacts import ORIGIN, find_contact, map_fields, upsert_contact
from server.outbox import record_change
from server.outbox.payloads import contact_changed, opportunity_created
from server.providers.errors import ProviderAuthError, ProviderError, ProviderTimeout
from server.providers.meta_graph import LeadData
from server.resilience.alerts import raise_alert, resolve_alerts
from server.resilience.jobs import Job, enqueue
from server.resilience.operations import CAPI_EVENT, META_LEADGEN

_log = logging.getLogger(__name__)
# A lead whose attempts all met a Graph outage is tried again after this (the spec's maxDelay),
# for as long as Meta would have retried its webhook.
OUTAGE_DEFER = dt.timedelta(seconds=60)
OUTAGE_PATIENCE = dt.timedelta(hours=36)
# Graph's read of a lead ends before the attempt's own limit (the spec's 10 s): a hang is then
# an outage this handler sees (and defers on the last attempt), not an attempt killed outside.
GRAPH_READ_LIMIT_S = META_LEADGEN.policy.timeout_s * 0.8
# Tag of a contact whose lead came again while its opportunity was still open.
REPEAT_TAG = "lead-repetido"
# Alert to the admins: a form's lead found nobody to distribute to.
NO_DISTRIBUTION_KIND = "lead_ads_sem_distribuicao"


async def handle_leadgen(deps: Deps, job: Job) -> None:
    """The `meta_leadgen` job handler."""
    payload = job.payload
    leadgen_id, page_id = str(payload["leadgen_id"]), str(payload["page_id"])
    async with deps.db.unit_of_work(tenant_service(job.tenant_id)) as session:
        if await _seen(session, leadgen_id):
            await _inbox_done(session, payload)
            return
        page = await session.scalar(select(MetaPage).where(MetaPage.page_id == page_id))
        conn = await session.scalar(
            select(MetaConnection).where(MetaConnection.deletado_em.is_(None))
        )
        form_id = str(payload.get("form_id") or "")
        mapping = await _mapping(session, form_id) if form_id else None
        if page is None or not page.ativo or conn is None:
            # Not (or no longer) ours to process: counted, no contact.
            await _record(session, job.tenant_id, payload, None, "inativo")
            return
        if conn.status != "active":
            await _park(session, job)
            return
        if form_id and (mapping is None or not mapping.ativo):
            await _record(
                session,
                job.tenant_id,
                payload,
                mapping,
                "sem_mapeamento" if not mapping else "inativo",
            )
            return
        token = page_token(deps, page)
    try:
        lead = await _read_lead(deps, leadgen_id, token)
    except ProviderAuthError as exc:
        async with deps.db.unit_of_work(tenant_service(job.tenant_id)) as session:
            await mark_broken(session, job.tenant_id, exc)
            await _park(session, job)
        return
    except ProviderError as exc:
        now = deps.clock.now()
        if not (exc.outage and job.attempt >= job.max_attempts and _patient(payload, now)):
            raise
        async with deps.db.unit_of_work(tenant_service(job.tenant_id)) as session:
            await _defer(session, job, now)
        return
    try:
        async with deps.db.unit_of_work(tenant_service(job.tenant_id)) as session:
            form_id = form_id or lead.form_id
            mapping = await _mapping(session, form_id)
            payload = {**payload, "form_id": form_id}
            if mapping is None or not mapping.ativo:
                status = "sem_mapeamento" if not mapping else "inativo"
                await _record(session, job.tenant_id, payload, mapping, status)
                return
            await _create(deps, session, job.tenant_id, payload, mapping, lead)
    except _AlreadyTaken:
        _log.info("lead %s was taken in by another run", leadgen_id)


async def _seen(session: AsyncSession, leadgen_id: str) -> bool:
    found = await session.scalar(
        select(MetaLeadReceived.id).where(MetaLeadReceived.leadgen_id == leadgen_id)
    )
    return found is not None


async def _mapping(session: AsyncSession, form_id: str) -> LeadAdsForm | None:
    row: LeadAdsForm | None = await session.scalar(
        select(LeadAdsForm)
        .where(LeadAdsForm.form_id == form_id, LeadAdsForm.deletado_em.is_(None))
        .with_for_update()  # serialises stats and the round-robin per form
    )
    return row


async def _inbox_done(session: AsyncSession, payload: Mapping[str, Any]) -> None:
    if payload.get("inbox_id"):
        await session.execute(
            text("UPDATE webhook_inbox SET processed_at = now() WHERE id = :id"),
            {"id": uuid.UUID(str(payload["inbox_id"]))},
        )


async def _record(
    session: AsyncSession,
    tenant: uuid.UUID,
    payload: Mapping[str, Any],
    mapping: LeadAdsForm | None,
    status: str,
    **links: Any,
) -> bool:
    """The ledger row; False when the lead was already taken in (a concurrent run).

    One statement: the ledger insert, and only when it inserted, the mapping's counters and
    the inbox row marked processed (data-modifying CTEs run whether or not they are read)."""
    created = _when(payload.get("created_time"))
    ledger = (
        insert(MetaLeadReceived)
        .values(
            # Given here: column defaults computed in Python are not applied inside a CTE.
            id=uuid.uuid4(),
            organizacao_id=tenant,
            leadgen_id=str(payload["leadgen_id"]),
            page_id=str(payload["page_id"]),
            form_id=str(payload.get("form_id") or ""),
            formulario_id=mapping.id if mapping else None,
            status=status,
            origem=str(payload.get("origem") or "webhook"),
            lead_criado_em=created,
            **links,
        )
        .on_conflict_do_nothing()
        .returning(MetaLeadReceived.id)
        .cte("ledger")
    )
    taken_in = exists(select(ledger.c.id))
    statement = select(ledger.c.id)
    if mapping is not None:
        statement = statement.add_cte(
            update(LeadAdsForm)
            .where(LeadAdsForm.id == mapping.id, taken_in)
            .values(
                total_leads_recebidos=func.coalesce(LeadAdsForm.total_leads_recebidos, 0) + 1,
                ultimo_lead_recebido=func.greatest(
                    LeadAdsForm.ultimo_lead_recebido, created or func.now()
                ),
            )
            .cte("counted")
        )
    if payload.get("inbox_id"):
        statement = statement.add_cte(
            update(WebhookInbox)
            .where(WebhookInbox.id == uuid.UUID(str(payload["inbox_id"])), taken_in)
            .values(processed_at=func.now())
            .cte("processed")
        )
    inserted = await session.scalar(statement)
    return inserted is not None


def _when(value: object) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    if value in (None, ""):
        return None
    try:
        return dt.datetime.fromtimestamp(int(str(value)), dt.UTC)
    except ValueError:
        return None


async def _read_lead(deps: Deps, leadgen_id: str, token: str) -> LeadData:
    try:
        async with asyncio.timeout(GRAPH_READ_LIMIT_S):
            return await graph(deps).get_lead(leadgen_id, token)
    except TimeoutError:
        raise ProviderTimeout(
            f"reading lead {leadgen_id} took longer than {GRAPH_READ_LIMIT_S:g}s",
            provider="meta_graph",
        ) from None


def _patient(payload: Mapping[str, Any], now: dt.datetime) -> bool:
    since = payload.get("adiado_desde")
    if not isinstance(since, int | float) or isinstance(since, bool):
        return True
    return now - dt.datetime.fromtimestamp(since, dt.UTC) < OUTAGE_PATIENCE


async def _defer(session: AsyncSession, job: Job, now: dt.datetime) -> None:
    """A copy of the job, with a fresh attempt budget, due after OUTAGE_DEFER. The job itself
    then completes (its breaker sees this last attempt as answered: the failures before it
    were counted)."""
    since = job.payload.get("adiado_desde") or now.timestamp()
    await enqueue(
        session,
        tenant_id=job.tenant_id,
        operation=META_LEADGEN,
        payload={**job.payload, "adiado_desde": since},
        idempotency_key=f"{job.idempotency_key.split(':adiado:')[0]}:adiado:{job.id}",
        run_at=now + OUTAGE_DEFER,
    )
    _log.warning(
        "lead %s deferred: Graph is failing (attempt %d of %d)",
        job.payload.get("leadgen_id"),
        job.attempt,
        job.max_attempts,
    )


async def _park(session: AsyncSession, job: Job) -> None:
    """Keeps the lead for after reconnection (see the module docstring)."""
    await enqueue(
        session,
        tenant_id=job.tenant_id,
        operation=META_LEADGEN,
        payload={**job.payload, "parked": True},
        idempotency_key=f"{job.idempotency_key}:parked:{job.id}",
        run_at=PARKED_UNTIL,
    )
    _log.info("lead %s parked until Meta is reconnected", job.payload.get("leadgen_id"))


async def next_owner(session: AsyncSession, mapping: LeadAdsForm) -> uuid.UUID | None:
    """The mapping's owner while active, or the next user of the directory's distribution
    pool after the last one the tenant handed a lead to, whatever the form (round-robin).

    The tenant row is locked (FOR NO KEY UPDATE: inserts referencing it are not blocked) until
    the lead commits, so concurrent leads, in any replica, take consecutive slots. With nobody
    in the pool the lead gets no owner and the admins are alerted, once per form while open."""
    if mapping.owner_id is not None:
        owner = await session.get(User, mapping.owner_id)
        if owner is not None and owner.ativo and owner.deletado_em is None:
            return mapping.owner_id
    users = await distribution_pool(session)
    if not users:
        await _alert_nobody_to_distribute(session, mapping)
        return None
    tenant = mapping.organizacao_id
    last = await session.scalar(
        select(Organization.lead_ads_ultimo_owner_id)
        .where(Organization.id == tenant)
        .with_for_update(key_share=True)
    )
    chosen = users[(users.index(last) + 1) % len(users)] if last in users else users[0]
    await session.execute(
        update(Organization)
        .where(Organization.id == tenant)
        .values(lead_ads_ultimo_owner_id=chosen)
    )
    await resolve_alerts(
        session, tenant_id=tenant, kind=NO_DISTRIBUTION_KIND, at=dt.datetime.now(dt.UTC)
    )
    return chosen


async def _alert_nobody_to_distribute(session: AsyncSession, mapping: LeadAdsForm) -> None:
    await raise_alert(
        session,
        tenant_id=mapping.organizacao_id,
        audience="tenant_admin",
        kind=NO_DISTRIBUTION_KIND,
        severity="warning",
        message=(
            f"O formulario {mapping.form_name or mapping.form_id} recebeu um lead sem responsavel:"
            " ninguem participa da distribuicao automatica. Defina um responsavel no mapeamento"
            " ou inclua vendedores na distribuicao."
        ),
        details={
            "titulo": "Lead sem responsavel: ninguem na distribuicao",
            "connection_type": CONNECTION_TYPE.upper(),
            "entidade_tipo": "formularios_lead_ads",
            "entidade_id": str(mapping.id),
        },
    )


async def _active_owner(session: AsyncSession, contact: Contact | None) -> uuid.UUID | None:
    if contact is None or contact.owner_id is None:
        return None
    user = await session.get(User, contact.owner_id)
    return contact.owner_id if user is not None and user.ativo and not user.deletado_em else None


async def _open_opportunity(
    session: AsyncSession, contact: Contact, mapping: LeadAdsForm
) -> Opportunity | None:
    """The contact's open opportunity in the mapping's pipeline, if any (the latest)."""
    if mapping.funil_id is None:
        return None
    found: Opportunity | None = await session.scalar(
        select(Opportunity)
        .where(
            Opportunity.contato_id == contact.id,
            Opportunity.funil_id == mapping.funil_id,
            Opportunity.status == "open",
        )
        .order_by(Opportunity.criado_em.desc())
        .limit(1)
    )
    return found


async def _create(
    deps: Deps,
    session: AsyncSession,
    tenant: uuid.UUID,
    payload: Mapping[str, Any],
    mapping: LeadAdsForm,
    lead: LeadData,
) -> None:
    data = map_fields(lead, mapping.mapeamento_campos or {})
    known = await find_contact(session, data)
    # A contact the CRM already knows keeps its owner, for the opportunity and the notice.
    owner = await _active_owner(session, known) or await next_owner(session, mapping)
    tags = list(mapping.tags_automaticas or [])
    repeat = await _open_opportunity(session, known, mapping) if known else None
    if repeat is not None:
        tags.append(REPEAT_TAG)
    contact = await upsert_contact(session, tenant, data, tags, owner, known=known)
    opportunity = repeat  # a repeat lead is recorded on the open one, not a second
    if repeat is None and mapping.criar_oportunidade is not False:
        opportunity = Opportunity(
            organizacao_id=tenant,
            contato_id=contact.id,
            funil_id=mapping.funil_id,
            etapa_id=mapping.etapa_destino_id,
            owner_id=owner,
            titulo=f"{data.nome or data.email or 'Lead'} - {mapping.form_name or 'Lead Ads'}"[:255],
            origem=ORIGIN,
        )
        session.add(opportunity)
        await session.flush()
    created = lead.created_time or _when(payload.get("created_time"))
    recorded = await _record(
        session,
        tenant,
        {**payload, "created_time": int(created.timestamp()) if created else None},
        mapping,
        "processado",
        contato_id=contact.id,
        oportunidade_id=opportunity.id if opportunity else None,
        owner_id=owner,
    )
    if not recorded:
        # Another run took this lead in first: undo ours by failing the transaction.
        raise _AlreadyTaken()
    # The CRM core learns what the lead created (change feed, outbound webhooks).
    await record_change(
        session,
        tenant,
        "CONTACT_CHANGED",
        contact_changed(contact, created=known is None, origem=ORIGIN),
        user_id=owner,
    )
    if opportunity is not None and repeat is None:
        await record_change(
            session, tenant, "OPPORTUNITY_CREATED", opportunity_created(opportunity), user_id=owner
        )
    if mapping.notificar_owner is not False and owner is not None:
        await publish(
            session,
            Event(
                "LEAD_RECEIVED",
                tenant,
                owner,
                {
                    "contato_id": str(contact.id),
                    "oportunidade_id": str(opportunity.id) if opportunity else None,
                    "formulario_id": str(mapping.id),
                    "form_name": mapping.form_name,
                    "leadgen_id": lead.id,
                    "connection_type": "meta_lead_ads",
                    "repetido": repeat is not None,
                },
            ),
        )
    # The Conversions API hears of the lead too (its room's handler sends it), where the
    # tenant's pixel is configured and its Lead event is on: no job waits for a pixel that
    # does not exist.
    capi = await load_config(session)
    if capi is None or not capi.ativo or not event_enabled(capi, "lead"):
        return
    await enqueue(
        session,
        tenant_id=tenant,
        operation=CAPI_EVENT,
        payload={
            "event_name": "Lead",
            "crm_event": "lead",
            "contato_id": str(contact.id),
            "oportunidade_id": str(opportunity.id) if opportunity else None,
            "lead_id": lead.id,
            "event_time": int((created or deps.clock.now()).timestamp()),
        },
        idempotency_key=f"capi:lead:{lead.id}",
    )


class _AlreadyTaken(Exception):
    """Raised inside the unit of work to roll it back; caught by `handle_leadgen`."""
