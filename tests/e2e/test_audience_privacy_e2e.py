# ruff: noqa: F811  (the module fixtures are imported and named as parameters)
"""Contacts who leave stay out: a contact whose consent was withdrawn, or who was deleted in
the CRM directory, is removed from the audience at Meta (whether or not its last upload went
through) and is not added back by later pipeline events; and the Conversions API hears of a
Lead Ads lead only when the tenant's "lead" event is on."""

from __future__ import annotations

import datetime as dt
import uuid

from google.protobuf import timestamp_pb2
from renove.conexoes.v1 import audiences_service_pb2 as pb
from renove.conexoes.v1 import conversions_service_pb2 as cpb
from renove.conexoes.v1 import crm_directory_service_pb2 as dpb
from renove.conexoes.v1 import crm_directory_service_pb2_grpc as dpb_grpc
from renove.conexoes.v1 import crm_events_service_pb2 as epb
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import Contact, MetaConnection, PendingEvent
from server.resilience.jobs import enqueue
from server.resilience.operations import CAPI_EVENT
from server.resilience.worker import tenant_service
from tests.e2e.test_audiences_e2e import (  # noqa: F401 (module fixtures)
    Admin,
    admin,
    database,
    owner_engine,
    stack,
)
from tests.e2e.test_capi_e2e import Capi, capi  # noqa: F401 (fixture)
from tests.integration.meta_leads_support import make_pipeline, poll


def at(minutes: float) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes))
    return out


async def publish_mql(
    admin: Admin, contato: str, email: str, minutes: float = -30
) -> epb.PublishPipelineEventResponse:
    return await admin.events.PublishPipelineEvent(
        epb.PublishPipelineEventRequest(
            request_id=f"mql-{uuid.uuid4()}",
            event_type=epb.PIPELINE_EVENT_TYPE_MQL,
            contato_id=contato,
            contato=epb.ContactData(email=email),
            occurred_at=at(minutes),
        ),
        metadata=admin.service_md,
    )


async def members_at_meta(admin: Admin, audience: pb.Audience, n: int) -> None:
    async def reached() -> bool | None:
        return True if (await admin.meta(audience.audience_id))["members"] == n else None

    await poll(reached, within=60)


def directory(admin: Admin) -> dpb_grpc.CrmDirectoryServiceStub:
    return dpb_grpc.CrmDirectoryServiceStub(admin.stack.server.channel)


async def test_withdrawn_consent_removes_at_meta_and_events_do_not_add_back(admin: Admin) -> None:
    audience = await admin.create(audience_name="Consent", evento_gatilho=pb.AUDIENCE_TRIGGER_MQL)
    contato = str(uuid.uuid4())
    await publish_mql(admin, contato, "consent@example.com")
    await members_at_meta(admin, audience, 1)
    for minutes, consent in ((-20, True), (-15, False)):
        await directory(admin).UpsertCrmContact(
            dpb.UpsertCrmContactRequest(
                contact=dpb.CrmContact(
                    id=contato,
                    emails=["consent@example.com"],
                    consentimento=consent,
                    updated_at=at(minutes),
                )
            ),
            metadata=admin.service_md,
        )
    await members_at_meta(admin, audience, 0)

    again = await publish_mql(admin, contato, "consent@example.com", minutes=-1)
    assert [j.tipo for j in again.jobs if j.tipo == "audience_sync"] == []
    members = await admin.api.ListAudienceMembers(
        pb.ListAudienceMembersRequest(id=audience.id), metadata=admin.md
    )
    assert members.total_size == 0
    assert (await admin.meta(audience.audience_id))["members"] == 0


async def test_deleted_contact_is_removed_though_its_resync_failed_and_stays_deleted(
    admin: Admin,
) -> None:
    audience = await admin.create(audience_name="Deleted", evento_gatilho=pb.AUDIENCE_TRIGGER_MQL)
    contato = str(uuid.uuid4())
    await publish_mql(admin, contato, "deleted@example.com")
    await members_at_meta(admin, audience, 1)
    await admin.synced(audience)
    # A full resync marks the member unsynced, then Meta fails the upload.
    await admin.stack.control(
        "faults",
        {
            "pattern": f"/{audience.audience_id}/users",
            "kind": "server_error",
            "status": 503,
            "times": 1,
        },
    )
    await admin.api.SyncAudience(
        pb.SyncAudienceRequest(id=audience.id, full_resync=True, request_id=f"r-{contato}"),
        metadata=admin.md,
    )

    async def unsynced() -> bool | None:
        members = await admin.api.ListAudienceMembers(
            pb.ListAudienceMembersRequest(id=audience.id, sincronizado=False), metadata=admin.md
        )
        return True if members.total_size == 1 else None

    await poll(unsynced, within=30)
    await directory(admin).DeleteCrmContact(
        dpb.DeleteCrmContactRequest(id=contato, updated_at=at(-20)), metadata=admin.service_md
    )
    await members_at_meta(admin, audience, 0)

    # A pipeline event newer than the deletion neither revives the contact nor re-adds it.
    later = await publish_mql(admin, contato, "deleted@example.com", minutes=-1)
    assert not [j for j in later.jobs if j.tipo == "audience_sync"]
    async with admin.stack.server.deps.db.unit_of_work(admin.admin) as session:
        row = await session.get(Contact, uuid.UUID(contato))
    assert row is not None and row.deletado_em is not None
    await admin.synced(audience)
    assert (await admin.meta(audience.audience_id))["members"] == 0


async def test_lead_ads_lead_is_not_sent_when_the_lead_event_is_off(
    capi: Capi,
    owner_engine: AsyncEngine,
) -> None:
    await capi.setup(
        eventos_habilitados=cpb.CapiEnabledEvents(lead=False, schedule=True, mql=True, won=True)
    )
    stack_ = capi.stack
    await stack_.set_meta_app()
    await stack_.connect(capi.admin)
    funil, novos, _ = await make_pipeline(owner_engine, capi.tenant.id)
    await stack_.map_form(capi.admin, funil, novos)
    await stack_.submit({"full_name": "Ana Lima", "email": "ana.lima@example.com"})
    await stack_.drain()

    async def contact() -> uuid.UUID | None:
        async with stack_.server.deps.db.unit_of_work(capi.admin) as session:
            found: uuid.UUID | None = await session.scalar(
                select(Contact.id).where(Contact.email == "ana.lima@example.com")
            )
        return found

    contato = await poll(contact)
    async with stack_.server.deps.db.unit_of_work(capi.admin) as session:
        queued = list(
            await session.scalars(select(PendingEvent).where(PendingEvent.operacao == "capi_event"))
        )
    assert queued == []  # decided in the lead's own transaction

    # A job queued before the switch was turned off completes with the reason, unsent.
    async with stack_.server.deps.db.unit_of_work(tenant_service(capi.tenant.id)) as session:
        job_id = await enqueue(
            session,
            tenant_id=capi.tenant.id,
            operation=CAPI_EVENT,
            payload={
                "event_name": "Lead",
                "crm_event": "lead",
                "contato_id": str(contato),
                "lead_id": "123",
                "event_time": int(dt.datetime.now(dt.UTC).timestamp()),
            },
            idempotency_key=f"capi:lead:old-{contato}",
        )
    assert job_id is not None

    async def closed() -> PendingEvent | None:
        async with stack_.server.deps.db.unit_of_work(capi.admin) as session:
            job = await session.get(PendingEvent, job_id, populate_existing=True)
        return job if job is not None and job.status == "completed" else None

    job = await poll(closed)
    assert job.ultimo_erro == "not sent: the lead event is switched off"
    assert await capi.received() == []


async def test_audience_job_with_a_revoked_token_marks_the_connection_and_stops(
    admin: Admin,
) -> None:
    audience = await admin.create(audience_name="Revoked", evento_gatilho=pb.AUDIENCE_TRIGGER_MQL)
    await admin.stack.control("revoke", {})
    published = await publish_mql(admin, str(uuid.uuid4()), "revoked@example.com")
    [job] = [j for j in published.jobs if j.tipo == "audience_sync"]

    async def dead() -> PendingEvent | None:
        async with admin.stack.server.deps.db.unit_of_work(admin.admin) as session:
            row = await session.get(PendingEvent, uuid.UUID(job.job_id), populate_existing=True)
        return row if row is not None and row.status == "failed" else None

    failed = await poll(dead, within=60)
    assert failed.tentativas == 1  # a refused token is not retried against Meta
    async with admin.stack.server.deps.db.unit_of_work(admin.admin) as session:
        status = await session.scalar(
            select(MetaConnection.status).where(MetaConnection.deletado_em.is_(None))
        )
    assert status == "revoked"
    got = (
        await admin.api.GetAudience(pb.GetAudienceRequest(id=audience.id), metadata=admin.md)
    ).audience
    assert not got.ultimo_sync_sucesso
    members = await admin.api.ListAudienceMembers(
        pb.ListAudienceMembersRequest(id=audience.id, sincronizado=False), metadata=admin.md
    )
    assert members.total_size == 1  # kept, to be sent after reconnecting
    assert (await admin.meta(audience.audience_id))["members"] == 0
