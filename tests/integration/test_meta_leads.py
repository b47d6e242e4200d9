"""Lead Ads failure paths through the real stack (sandbox -> sidecar -> server -> PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from renove.conexoes.v1 import meta_leads_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import Alert, Contact, LeadAdsForm, MetaLeadReceived, MetaPage, Opportunity
from sandbox.graph.seed import USER_ID
from server.auth.caller import Caller, Role
from server.meta_leads import leads
from server.meta_leads.backfill import run_backfill
from server.meta_leads.leads import NO_DISTRIBUTION_KIND, next_owner
from tests.conftest import MakeCaller, MakeTenant, MigratedDatabase, PgServer, Tenant
from tests.integration.meta_leads_support import (
    QUESTIONS,
    MetaStack,
    isolated_database,
    make_pipeline,
    meta_stack,
    owner_engine_for,
    poll,
)

LEAD = {"full_name": "Ana Souza", "email": "ana@example.com", "phone_number": "11912345678"}


@pytest.fixture(scope="module")
async def database(pg: PgServer) -> AsyncIterator[MigratedDatabase]:
    async with isolated_database(pg) as fresh:
        yield fresh


@pytest.fixture(scope="module")
async def owner_engine(database: MigratedDatabase) -> AsyncIterator[AsyncEngine]:
    async with owner_engine_for(database) as engine:
        yield engine


@pytest.fixture
async def stack(database: MigratedDatabase, tmp_path: Path) -> AsyncIterator[MetaStack]:
    async with meta_stack(database.owner_url, str(tmp_path)) as running:
        await running.set_meta_app()
        yield running


def _query(url: object) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(str(url)).query).items()}


async def _ready(
    stack: MetaStack, tenant: Tenant, admin: Caller, owner_engine: AsyncEngine
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    pipeline = await make_pipeline(owner_engine, tenant.id)
    await stack.connect(admin)
    await stack.map_form(admin, pipeline[0], pipeline[1], owner=tenant.admin_id)
    return pipeline  # type: ignore[return-value]


async def _contact(stack: MetaStack, admin: Caller, email: str) -> Contact | None:
    async with stack.server.deps.db.unit_of_work(admin) as session:
        found: Contact | None = await session.scalar(select(Contact).where(Contact.email == email))
        return found


async def _wait_contact(stack: MetaStack, admin: Caller, email: str, within: float = 15) -> Contact:
    return await poll(lambda: _contact(stack, admin, email), within)


async def _take_part(
    owner_engine: AsyncEngine, tenant: Tenant, users: tuple[uuid.UUID, ...], role: str = ""
) -> None:
    """The CRM directory writes `users` as taking part in lead distribution (with `role`)."""
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
        )
        await conn.execute(
            text(
                "UPDATE usuarios SET participa_distribuicao = true, core_atualizado_em = now(),"
                " role = coalesce(nullif(:r, ''), role) WHERE id = ANY(:u)"
            ),
            {"u": list(users), "r": role},
        )


def _violations(exc: grpc.aio.AioRpcError) -> dict[str, str]:
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    return {v.field: v.description for v in bad.field_violations}
    return {}


def _reason(exc: grpc.aio.AioRpcError) -> str:
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    return info.reason
    return ""


async def test_denied_consent_and_state_abuse(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    admin = make_caller(tenant, Role.ADMIN)
    landed = await stack.authorize(admin, deny=True)
    assert _query(landed)["status"] == "erro" and _query(landed)["motivo"] == "ACCESS_DENIED"
    status = await stack.stub.GetMetaConnection(
        pb.GetMetaConnectionRequest(), metadata=stack.md(admin)
    )
    assert status.connection.status == resources_pb2.CONNECTION_STATUS_DISCONNECTED

    dialog, cookie = await stack.auth_url(admin)
    callback = (await stack.http.get(dialog)).headers["location"]
    # Completed in another browser (no binding cookie, or someone else's): refused, and the
    # state stays usable by the browser that asked for it.
    for other in ({}, {"cookie": "renove_oauth_meta_lead_ads=someone-elses-nonce"}):
        elsewhere = await stack.http.get(callback, headers=other)
        assert _query(elsewhere.headers["location"])["motivo"] == "STATE_BROWSER_MISMATCH"
    first = await stack.http.get(callback, headers={"cookie": cookie})
    assert _query(first.headers["location"])["status"] == "ok"
    replay = await stack.http.get(callback, headers={"cookie": cookie})
    assert _query(replay.headers["location"])["motivo"] == "STATE_REUSED"
    forged = await stack.http.get(
        f"{stack.sidecar_url}/api/v1/conexoes/meta/callback", params={"code": "x", "state": "abc"}
    )
    assert _query(forged.headers["location"])["motivo"] == "STATE_INVALID"
    async with owner_engine.connect() as conn:
        failures = (
            await conn.execute(
                text(
                    "SELECT organizacao_id, details->>'reason' AS reason FROM audit_log"
                    " WHERE action = 'meta.connect_failed'"
                    " AND (organizacao_id = :t OR organizacao_id IS NULL)"
                ),
                {"t": tenant.id},
            )
        ).all()
    # The replay is the tenant's (its state was genuine); a forged state names no tenant.
    assert (tenant.id, "STATE_REUSED") in failures and (None, "STATE_INVALID") in failures


async def test_member_needs_the_grant(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stack.stub.GetMetaAuthUrl(pb.GetMetaAuthUrlRequest(), metadata=stack.md(member))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
        )
        await conn.execute(
            text(
                "UPDATE usuarios SET permissoes_conexoes = '{\"meta_lead_ads\": true}'"
                " WHERE id = :u"
            ),
            {"u": tenant.member_id},
        )
    url = await stack.stub.GetMetaAuthUrl(pb.GetMetaAuthUrlRequest(), metadata=stack.md(member))
    assert "dialog/oauth" in url.oauth.auth_url and "leads_retrieval" in url.oauth.auth_url


async def test_mapping_validation(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    admin = make_caller(tenant, Role.ADMIN)
    funil, _, _ = await make_pipeline(owner_engine, tenant.id)
    _, other_stage, _ = await make_pipeline(owner_engine, tenant.id)
    await stack.connect(admin)
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stack.map_form(
            admin,
            funil,
            other_stage,
            owner=uuid.uuid4(),
            fields={"nope": "nome", "email": "idade", "full_name": "custom:Bad Name"},
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = _violations(bad.value)
    assert set(fields) >= {
        "mapping.etapa_destino_id",
        "mapping.owner_id",
        "mapping.mapeamento_campos[nope]",
        "mapping.mapeamento_campos[email]",
        "mapping.mapeamento_campos[full_name]",
    }
    async with stack.server.deps.db.unit_of_work(admin) as session:
        assert await session.scalar(select(LeadAdsForm.id)) is None


async def test_bad_signature_unknown_page_and_unmapped_form(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    admin = make_caller(tenant, Role.ADMIN)
    await stack.connect(admin)  # page selected, form not mapped
    forged = await stack.submit(LEAD, bad_signature=True)
    deliveries = await stack.drain()
    assert all(a["status"] in (401, 403) for a in deliveries[-1]["attempts"])
    unmapped = await stack.submit({"email": "x@example.com"})

    async def counted() -> MetaLeadReceived | None:
        async with stack.server.deps.db.unit_of_work(admin) as session:
            found: MetaLeadReceived | None = await session.scalar(
                select(MetaLeadReceived).where(MetaLeadReceived.leadgen_id == unmapped)
            )
            return found

    row = await poll(counted)
    assert row.status == "sem_mapeamento" and row.contato_id is None
    async with stack.server.deps.db.unit_of_work(admin) as session:
        assert await session.scalar(select(Contact.id)) is None
        assert (
            await session.scalar(
                select(MetaLeadReceived.id).where(MetaLeadReceived.leadgen_id == forged)
            )
            is None
        )
    # A lead of a page nobody selected is accepted by the sidecar and makes nothing.
    other = await stack.control("leads", {"form_id": "780000000000004", "answers": LEAD})
    assert other["delivery_id"] is None  # that page never subscribed the app


async def test_token_expired_mid_flow_parks_the_lead_until_reconnect(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    admin = make_caller(tenant, Role.ADMIN)
    await _ready(stack, tenant, admin, owner_engine)
    await stack.control("tokens/expire", {})
    await stack.submit(LEAD)
    await stack.drain()

    async def expired() -> bool | None:
        status = await stack.stub.GetMetaConnection(
            pb.GetMetaConnectionRequest(), metadata=stack.md(admin)
        )
        return True if status.connection.status == resources_pb2.CONNECTION_STATUS_EXPIRED else None

    await poll(expired)
    async with stack.server.deps.db.unit_of_work(admin) as session:
        alert = await session.scalar(select(Alert).where(Alert.kind == "meta_token_expired"))
        assert alert is not None and alert.audience == "tenant_admin"
        parked = await session.scalar(
            text(
                "SELECT count(*) FROM eventos_pendentes WHERE operacao = 'meta_leadgen'"
                " AND status = 'pending' AND proxima_tentativa > now() + interval '1000 years'"
            )
        )
        assert parked == 1
        failed = await session.scalar(
            text("SELECT count(*) FROM eventos_pendentes WHERE status = 'failed'")
        )
        assert failed == 0
    assert await _contact(stack, admin, "ana@example.com") is None

    landed = await stack.authorize(admin)  # the admin reconnects
    assert _query(landed)["status"] == "ok"
    contact = await _wait_contact(stack, admin, "ana@example.com")
    assert contact.telefone == "+5511912345678"


async def test_reconnect_with_slow_graph_runs_the_parked_lead_with_fresh_page_tokens(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    admin = make_caller(tenant, Role.ADMIN)
    await _ready(stack, tenant, admin, owner_engine)
    await stack.control("tokens/expire", {})
    leadgen_id = await stack.submit({**LEAD, "email": "slow@example.com"})
    await stack.drain()

    async def connection_status() -> int:
        got = await stack.stub.GetMetaConnection(
            pb.GetMetaConnectionRequest(), metadata=stack.md(admin)
        )
        return got.connection.status

    async def expired() -> bool | None:
        return (
            True if await connection_status() == resources_pb2.CONNECTION_STATUS_EXPIRED else None
        )

    await poll(expired)
    # Every Graph call of the reconnect (code exchange, token debug, page tokens) takes 0.5 s.
    await stack.control("latency", {"seconds": 0.5})
    landed = await stack.authorize(admin)
    assert _query(landed)["status"] == "ok"
    contact = await _wait_contact(stack, admin, "slow@example.com")
    assert contact.telefone == "+5511912345678"
    assert await connection_status() == resources_pb2.CONNECTION_STATUS_ACTIVE

    async def completed() -> bool | None:
        # The handler's transaction lands before the worker records the job completed.
        async with stack.server.deps.db.unit_of_work(admin) as session:
            job_status = await session.scalar(
                text("SELECT status FROM eventos_pendentes WHERE idempotency_key = :k"),
                {"k": f"meta_leadgen:{leadgen_id}"},
            )
        return True if job_status == "completed" else None

    await poll(completed)
    async with stack.server.deps.db.unit_of_work(admin) as session:
        # Marked expired once, by the first attempt (its alert now resolved); a run with a
        # dead page token after the reconnect would have raised a second one.
        alerts = list(
            await session.scalars(select(Alert).where(Alert.kind == "meta_token_expired"))
        )
    assert len(alerts) == 1 and alerts[0].details.get("resolvido_em")


async def test_a_lead_before_its_mapping_becomes_an_opportunity_once_mapped(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    admin = make_caller(tenant, Role.ADMIN)
    funil, etapa, _ = await make_pipeline(owner_engine, tenant.id)
    await stack.connect(admin)
    leadgen_id = await stack.submit({**LEAD, "email": "early@example.com"})

    async def recorded_unmapped() -> bool | None:
        async with stack.server.deps.db.unit_of_work(admin) as session:
            row = await session.scalar(
                select(MetaLeadReceived).where(MetaLeadReceived.leadgen_id == leadgen_id)
            )
        return True if row is not None and row.status == "sem_mapeamento" else None

    await poll(recorded_unmapped)
    assert await _contact(stack, admin, "early@example.com") is None

    await stack.map_form(admin, funil, etapa, owner=tenant.admin_id)
    contact = await _wait_contact(stack, admin, "early@example.com")

    async def processed() -> MetaLeadReceived | None:
        async with stack.server.deps.db.unit_of_work(admin) as session:
            row = await session.scalar(
                select(MetaLeadReceived).where(MetaLeadReceived.leadgen_id == leadgen_id)
            )
        return row if row is not None and row.oportunidade_id is not None else None

    ledger = await poll(processed)
    assert ledger.contato_id == contact.id and ledger.status != "sem_mapeamento"
    await stack.control(f"leads/{leadgen_id}/webhook")  # Meta delivers it again
    await stack.drain()
    async with stack.server.deps.db.unit_of_work(admin) as session:
        opportunities = list(
            await session.scalars(select(Opportunity).where(Opportunity.contato_id == contact.id))
        )
        capi_jobs = await session.scalar(
            text("SELECT count(*) FROM eventos_pendentes WHERE operacao = 'capi_event'")
        )
    assert [o.etapa_id for o in opportunities] == [etapa]  # once
    assert capi_jobs == 0  # no pixel configured: no Conversions API job waits for one


async def test_a_repeat_lead_keeps_the_owner_and_lands_on_the_open_opportunity(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant(members=1)
    admin = make_caller(tenant, Role.ADMIN)
    funil, etapa, _ = await _ready(stack, tenant, admin, owner_engine)
    first = await stack.submit({**LEAD, "email": "repeat@example.com"})
    contact = await _wait_contact(stack, admin, "repeat@example.com")
    # The CRM gave the contact to the member since.
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
        )
        await conn.execute(
            text("UPDATE contatos SET owner_id = :m WHERE id = :c"),
            {"m": tenant.member_id, "c": contact.id},
        )

    async def ledger(leadgen_id: str) -> MetaLeadReceived | None:
        async with stack.server.deps.db.unit_of_work(admin) as session:
            found: MetaLeadReceived | None = await session.scalar(
                select(MetaLeadReceived).where(MetaLeadReceived.leadgen_id == leadgen_id)
            )
        return found

    original = await poll(lambda: ledger(first))
    second = await stack.submit({**LEAD, "email": "repeat@example.com", "full_name": "Ana S."})
    again = await poll(lambda: ledger(second))
    assert again.oportunidade_id == original.oportunidade_id  # recorded on the open one
    assert again.owner_id == tenant.member_id  # the contact's owner, not the form's
    async with stack.server.deps.db.unit_of_work(admin) as session:
        opportunities = list(
            await session.scalars(select(Opportunity).where(Opportunity.contato_id == contact.id))
        )
        tagged = await session.get(Contact, contact.id, populate_existing=True)
    assert len(opportunities) == 1 and opportunities[0].funil_id == funil
    assert tagged is not None and "lead-repetido" in tagged.tags

    # Once that opportunity is closed, the next lead opens a new one, for the contact's owner.
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
        )
        await conn.execute(
            text("UPDATE oportunidades SET status = 'won' WHERE contato_id = :c"),
            {"c": contact.id},
        )
    third = await stack.submit({**LEAD, "email": "repeat@example.com"})
    fresh = await poll(lambda: ledger(third))
    assert fresh.oportunidade_id not in (None, original.oportunidade_id)
    async with stack.server.deps.db.unit_of_work(admin) as session:
        opened = await session.get(Opportunity, fresh.oportunidade_id)
    assert opened is not None and opened.owner_id == tenant.member_id and opened.etapa_id == etapa


async def test_graph_5xx_is_retried(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    admin = make_caller(tenant, Role.ADMIN)
    _, stage, _ = await _ready(stack, tenant, admin, owner_engine)
    leadgen_id = await stack.submit({**LEAD, "email": "retry@example.com"}, send_webhook=False)
    await stack.control("faults", {"pattern": f"/{leadgen_id}$", "kind": "server_error"})
    await stack.control(f"leads/{leadgen_id}/webhook")
    contact = await _wait_contact(stack, admin, "retry@example.com")

    async def completed_attempts() -> int | None:
        # The handler's transaction lands before the worker records the job completed.
        async with stack.server.deps.db.unit_of_work(admin) as session:
            row = (
                await session.execute(
                    text(
                        "SELECT status, tentativas FROM eventos_pendentes"
                        " WHERE idempotency_key = :k"
                    ),
                    {"k": f"meta_leadgen:{leadgen_id}"},
                )
            ).one()
        return int(row.tentativas) if row.status == "completed" else None

    assert await poll(completed_attempts) == 2
    async with stack.server.deps.db.unit_of_work(admin) as session:
        opp = await session.scalar(select(Opportunity).where(Opportunity.contato_id == contact.id))
        assert opp is not None and opp.etapa_id == stage


async def test_a_lead_whose_attempts_all_meet_a_graph_outage_is_deferred_not_lost(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    admin = make_caller(tenant, Role.ADMIN)
    await _ready(stack, tenant, admin, owner_engine)
    leadgen_id = await stack.submit({**LEAD, "email": "outage@example.com"}, send_webhook=False)
    await stack.control(
        "faults", {"pattern": f"/{leadgen_id}$", "kind": "server_error", "times": 3}
    )
    await stack.control(f"leads/{leadgen_id}/webhook")

    async def jobs() -> list[Any] | None:
        async with stack.server.deps.db.unit_of_work(admin) as session:
            rows = (
                await session.execute(
                    text(
                        "SELECT idempotency_key, status, tentativas,"
                        " proxima_tentativa - now() AS wait FROM eventos_pendentes"
                        " WHERE payload->>'leadgen_id' = :id ORDER BY criado_em"
                    ),
                    {"id": leadgen_id},
                )
            ).all()
        return list(rows) if len(rows) == 2 and rows[0].status == "completed" else None

    first, deferred = await poll(jobs)
    assert first.tentativas == 3  # every attempt met the outage; nothing dead-lettered
    assert deferred.status == "pending" and deferred.wait.total_seconds() > 30
    assert deferred.idempotency_key.startswith(f"meta_leadgen:{leadgen_id}:adiado:")
    assert await _contact(stack, admin, "outage@example.com") is None

    async with owner_engine.begin() as conn:  # a minute later, Graph answers again
        await conn.execute(
            text(
                "UPDATE eventos_pendentes SET proxima_tentativa = now() WHERE idempotency_key = :k"
            ),
            {"k": deferred.idempotency_key},
        )
    contact = await _wait_contact(stack, admin, "outage@example.com")
    async with stack.server.deps.db.unit_of_work(admin) as session:
        opp = await session.scalar(select(Opportunity).where(Opportunity.contato_id == contact.id))
        assert opp is not None


async def test_a_lead_whose_graph_reads_hang_is_deferred_not_lost(
    stack: MetaStack,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    owner_engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Graph that hangs past the attempt's limit: each read ends as an outage the handler
    sees (not an attempt killed from outside), so the lead is deferred as for a 5xx."""
    monkeypatch.setattr(leads, "GRAPH_READ_LIMIT_S", 0.3)
    tenant = await make_tenant()
    admin = make_caller(tenant, Role.ADMIN)
    await _ready(stack, tenant, admin, owner_engine)
    leadgen_id = await stack.submit({**LEAD, "email": "hang@example.com"}, send_webhook=False)
    await stack.control("latency", {"seconds": 2})
    try:
        await stack.control(f"leads/{leadgen_id}/webhook")

        async def deferred() -> str | None:
            async with stack.server.deps.db.unit_of_work(admin) as session:
                key = await session.scalar(
                    text(
                        "SELECT idempotency_key FROM eventos_pendentes"
                        " WHERE payload->>'leadgen_id' = :id AND status = 'pending'"
                        " AND idempotency_key LIKE '%:adiado:%'"
                    ),
                    {"id": leadgen_id},
                )
            return str(key) if key else None

        key = await poll(deferred, within=60)
    finally:
        await stack.control("latency", {"seconds": 0})
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE eventos_pendentes SET proxima_tentativa = now() WHERE idempotency_key = :k"
            ),
            {"k": key},
        )
    await _wait_contact(stack, admin, "hang@example.com")


async def test_backfill_recovers_a_missed_lead(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant(members=2)
    admin = make_caller(tenant, Role.ADMIN)
    await _take_part(owner_engine, tenant, tenant.members)
    pipeline = await make_pipeline(owner_engine, tenant.id)
    await stack.connect(admin)
    await stack.map_form(admin, pipeline[0], pipeline[1])  # automatic distribution
    await stack.submit({**LEAD, "email": "missed@example.com"}, send_webhook=False)
    await stack.submit({**LEAD, "email": "seen@example.com", "phone_number": ""})
    await _wait_contact(stack, admin, "seen@example.com")
    found = await run_backfill(stack.server.deps)
    assert found >= 1
    missed = await _wait_contact(stack, admin, "missed@example.com")
    async with stack.server.deps.db.unit_of_work(admin) as session:
        owners = list(
            await session.scalars(select(Opportunity.owner_id).order_by(Opportunity.criado_em))
        )
        ledger = await session.scalar(
            select(MetaLeadReceived.origem).where(MetaLeadReceived.contato_id == missed.id)
        )
    assert ledger == "backfill"
    assert len(owners) == 2 and owners[0] != owners[1]  # round-robin


async def test_disconnect_deactivates_pages_and_mappings(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    admin = make_caller(tenant, Role.ADMIN)
    await _ready(stack, tenant, admin, owner_engine)
    connected = await stack.stub.GetMetaConnection(
        pb.GetMetaConnectionRequest(), metadata=stack.md(admin)
    )
    assert connected.connection.meta_user_email == "marketing@renove.example"  # email scope
    done = await stack.stub.DisconnectMeta(pb.DisconnectMetaRequest(), metadata=stack.md(admin))
    assert done.connection.status == resources_pb2.CONNECTION_STATUS_DISCONNECTED

    async def revoked_at_meta() -> list[str] | None:
        world = (await stack.http.get(f"{stack.graph_url}/_control/world")).json()
        return world["revoked_apps"] or None

    assert await poll(revoked_at_meta) == [USER_ID]  # DELETE /me/permissions, by a job
    async with stack.server.deps.db.unit_of_work(admin) as session:
        pages = list(await session.scalars(select(MetaPage)))
        forms = list(await session.scalars(select(LeadAdsForm)))
    assert pages and all(not p.ativo and p.page_access_token_encrypted is None for p in pages)
    assert forms and all(not f.ativo for f in forms)
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await stack.stub.ListMetaPages(pb.ListMetaPagesRequest(), metadata=stack.md(admin))
    assert gone.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Reconnecting keeps the same connection row.
    await stack.authorize(admin)
    again = await stack.stub.GetMetaConnection(
        pb.GetMetaConnectionRequest(), metadata=stack.md(admin)
    )
    assert again.connection.id == done.connection.id


async def test_a_page_belongs_to_one_tenant_and_its_lead_reaches_one(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    first, second = await make_tenant(), await make_tenant()
    owner, intruder = make_caller(first, Role.ADMIN), make_caller(second, Role.ADMIN)
    await _ready(stack, first, owner, owner_engine)
    # The same Facebook user connects in another tenant: the OAuth works, the page does not.
    assert _query(await stack.authorize(intruder))["status"] == "ok"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.stub.SelectMetaPage(
            pb.SelectMetaPageRequest(page_id=stack.page_id, request_id=str(uuid.uuid4())),
            metadata=stack.md(intruder),
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = refused.value.details() or ""
    assert "another organization" in details and str(first.id) not in details
    assert _reason(refused.value) == "PAGE_IN_USE"

    await stack.submit({**LEAD, "email": "one@example.com"})
    await _wait_contact(stack, owner, "one@example.com")
    await stack.drain()
    async with stack.server.deps.db.system() as session:
        holders = list(
            await session.scalars(
                text("SELECT organizacao_id FROM app_resolve_meta_page(:p)"), {"p": stack.page_id}
            )
        )
    assert holders == [first.id]
    async with stack.server.deps.db.unit_of_work(intruder) as session:
        assert await session.scalar(select(MetaPage.id)) is None
        assert await session.scalar(select(MetaLeadReceived.id)) is None
        assert await session.scalar(select(Contact.id)) is None


async def _owner_of(stack: MetaStack, admin: Caller, email: str) -> uuid.UUID | None:
    contact = await _wait_contact(stack, admin, email)
    async with stack.server.deps.db.unit_of_work(admin) as session:
        owner: uuid.UUID | None = await session.scalar(
            select(Opportunity.owner_id).where(Opportunity.contato_id == contact.id)
        )
    assert contact.owner_id == owner
    return owner


async def _distribution_alerts(stack: MetaStack, admin: Caller) -> list[Alert]:
    async with stack.server.deps.db.unit_of_work(admin) as session:
        return list(
            await session.scalars(
                select(Alert).where(Alert.kind == NO_DISTRIBUTION_KIND).order_by(Alert.criado_em)
            )
        )


async def test_nobody_taking_part_leaves_the_lead_unowned_and_alerts_the_admin(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant(members=2)
    admin = make_caller(tenant, Role.ADMIN)
    boss, seller = tenant.members
    # A super admin the directory flags, and a user known only from a token (just in time,
    # never written by the directory) even if flagged, are never in the pool.
    await _take_part(owner_engine, tenant, (boss,), role="super_admin")
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
        )
        await conn.execute(
            text("UPDATE usuarios SET participa_distribuicao = true WHERE id = :u"),
            {"u": seller},
        )
    pipeline = await make_pipeline(owner_engine, tenant.id)
    await stack.connect(admin)
    mapping = await stack.map_form(admin, pipeline[0], pipeline[1])  # automatic distribution
    await stack.submit({**LEAD, "email": "orphan1@example.com", "phone_number": ""})
    assert await _owner_of(stack, admin, "orphan1@example.com") is None
    await stack.submit({**LEAD, "email": "orphan2@example.com", "phone_number": ""})
    assert await _owner_of(stack, admin, "orphan2@example.com") is None
    alerts = await _distribution_alerts(stack, admin)
    # One open alert for the form, counting both leads.
    assert len(alerts) == 1 and "resolvido_em" not in alerts[0].details
    assert alerts[0].audience == "tenant_admin" and alerts[0].details["ocorrencias"] == 2
    assert alerts[0].details["entidade_id"] == mapping.id
    # Once the directory puts the seller in distribution, leads go to them and the alert closes.
    await _take_part(owner_engine, tenant, (seller,))
    await stack.submit({**LEAD, "email": "owned@example.com", "phone_number": ""})
    assert await _owner_of(stack, admin, "owned@example.com") == seller
    alerts = await _distribution_alerts(stack, admin)
    assert len(alerts) == 1 and alerts[0].details.get("resolvido_em")


async def test_rotation_is_fair_across_the_tenants_forms(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant(members=3)
    admin = make_caller(tenant, Role.ADMIN)
    await _take_part(owner_engine, tenant, tenant.members)
    pipeline = await make_pipeline(owner_engine, tenant.id)
    await stack.connect(admin)
    await stack.map_form(admin, pipeline[0], pipeline[1])
    second = await stack.control(
        "forms", {"page_id": stack.page_id, "name": "Ebook", "questions": QUESTIONS}
    )
    await stack.map_form(admin, pipeline[0], pipeline[1], form_id=second["id"])
    owners = []
    for n in range(6):
        email = f"fair{n}@example.com"
        if n % 2:
            answers = {**LEAD, "email": email, "phone_number": ""}
            await stack.control("leads", {"form_id": second["id"], "answers": answers})
        else:
            await stack.submit({**LEAD, "email": email, "phone_number": ""})
        owners.append(await _owner_of(stack, admin, email))
    # Each form alone would have started at the first seller; across forms they take turns.
    assert sorted(owners, key=str) == sorted(list(tenant.members) * 2, key=str)
    assert owners[:3] == owners[3:] and len(set(owners[:3])) == 3


async def test_concurrent_leads_of_two_forms_take_consecutive_turns(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    """Leads handed out at once (as by two replicas): each pick waits for the one before to
    commit, so nine concurrent picks over two forms serve three sellers three times each."""
    tenant = await make_tenant(members=3)
    admin = make_caller(tenant, Role.ADMIN)
    await _take_part(owner_engine, tenant, tenant.members)
    pipeline = await make_pipeline(owner_engine, tenant.id)
    await stack.connect(admin)
    second = await stack.control(
        "forms", {"page_id": stack.page_id, "name": "Ebook", "questions": QUESTIONS}
    )
    ids = [
        uuid.UUID((await stack.map_form(admin, pipeline[0], pipeline[1], form_id=form)).id)
        for form in (stack.form_id, second["id"])
    ]

    async def pick(n: int) -> uuid.UUID | None:
        async with stack.server.deps.db.unit_of_work(admin) as session:
            mapping = await session.get(LeadAdsForm, ids[n % 2])
            assert mapping is not None
            return await next_owner(session, mapping)

    owners = await asyncio.gather(*(pick(n) for n in range(9)))
    assert sorted(Counter(owners).values()) == [3, 3, 3]
    assert set(owners) == set(tenant.members)
