"""The Meta connection health probe (debug_token) against the Graph sandbox and PostgreSQL.

The probe is called directly rather than waited for: the scheduler's interval is an hour."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from renove.conexoes.v1 import meta_leads_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import Alert, MetaConnection
from server.auth.caller import Caller, Role
from server.meta_leads.health import APP_REJECTED_KIND, TASK, Outcome, run_health_probe
from server.resilience.alerts import open_alert
from tests.conftest import MakeCaller, MakeTenant, MigratedDatabase, PgServer, Tenant
from tests.integration.meta_leads_support import (
    MetaStack,
    isolated_database,
    meta_stack,
    owner_engine_for,
)

DAY = 24 * 3600


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


async def _connected(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> tuple[Tenant, Caller]:
    tenant = await make_tenant()
    admin = make_caller(tenant, Role.ADMIN)
    await stack.connect(admin)
    return tenant, admin


async def _probe(stack: MetaStack, tenant: Tenant) -> Outcome:
    # Tenants of earlier tests hold tokens this sandbox never issued: only ours is asserted.
    return (await run_health_probe(stack.server.deps))[tenant.id]


async def _clear_faults(stack: MetaStack) -> None:
    # Every tenant's probe calls debug_token: a fault must outlast the others', then go.
    (await stack.http.delete(f"{stack.graph_url}/_control/faults")).raise_for_status()


async def _connection(stack: MetaStack, admin: Caller) -> pb.MetaConnection:
    got = await stack.stub.GetMetaConnection(
        pb.GetMetaConnectionRequest(), metadata=stack.md(admin)
    )
    return got.connection


async def _alerts(stack: MetaStack, admin: Caller, *, opened: bool = True) -> list[Alert]:
    query = select(Alert).where(Alert.organizacao_id == admin.tenant_id)
    if opened:
        query = query.where(*open_alert())
    async with stack.server.deps.db.unit_of_work(admin) as session:
        return list(await session.scalars(query.order_by(Alert.criado_em)))


async def test_healthy_token_records_the_sync_and_raises_nothing(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    assert TASK in stack.server.deps.scheduler.names
    tenant, admin = await _connected(stack, make_tenant, make_caller)
    async with owner_engine.begin() as conn:  # forget the connect's own timestamps
        await conn.execute(
            update(MetaConnection)
            .where(MetaConnection.organizacao_id == tenant.id)
            .values(ultimo_sync=None, token_expires_at=None)
        )
    before = dt.datetime.now(dt.UTC)

    assert await _probe(stack, tenant) is Outcome.HEALTHY

    shown = await _connection(stack, admin)
    assert shown.status == resources_pb2.CONNECTION_STATUS_ACTIVE
    assert shown.ultimo_sync.ToDatetime(dt.UTC) >= before - dt.timedelta(seconds=1)
    # The sandbox's long-lived token: about 60 days, as debug_token says.
    remaining = shown.token_expires_at.ToDatetime(dt.UTC) - before
    assert dt.timedelta(days=59) < remaining < dt.timedelta(days=61)
    assert "leads_retrieval" in shown.scopes
    assert await _alerts(stack, admin, opened=False) == []


@pytest.mark.parametrize(
    ("control", "status"), [("tokens/expire", "expired"), ("revoke", "revoked")]
)
async def test_dead_token_is_marked_and_alerted_until_reconnect(
    stack: MetaStack,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    control: str,
    status: str,
) -> None:
    tenant, admin = await _connected(stack, make_tenant, make_caller)
    await stack.control(control)

    assert await _probe(stack, tenant) is Outcome(status)
    assert await _probe(stack, tenant) is Outcome.STILL_DEAD  # marked already: said once
    shown = await _connection(stack, admin)
    expected = getattr(resources_pb2, f"CONNECTION_STATUS_{status.upper()}")
    assert shown.status == expected and "190" in shown.ultimo_erro
    [alert] = await _alerts(stack, admin)
    assert alert.kind == f"meta_token_{status}" and alert.audience == "tenant_admin"
    assert alert.details["entidade_id"] == shown.id

    landed = await stack.authorize(admin)  # the admin reconnects: same row, alerts closed
    assert "status=ok" in str(landed)
    assert (await _connection(stack, admin)).id == shown.id
    assert await _alerts(stack, admin) == []
    assert await _probe(stack, tenant) is Outcome.HEALTHY
    assert (await _connection(stack, admin)).status == resources_pb2.CONNECTION_STATUS_ACTIVE


async def test_graph_190_then_valid_again_recovers(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant, admin = await _connected(stack, make_tenant, make_caller)
    await stack.control(
        "faults", {"pattern": "debug_token", "kind": "token_expired", "subcode": 463, "times": 99}
    )
    assert await _probe(stack, tenant) is Outcome.EXPIRED
    assert (await _connection(stack, admin)).status == resources_pb2.CONNECTION_STATUS_EXPIRED
    assert [a.kind for a in await _alerts(stack, admin)] == ["meta_token_expired"]

    # The token was fine after all: the next probe puts the connection back on its feet.
    await _clear_faults(stack)
    assert await _probe(stack, tenant) is Outcome.RECOVERED
    shown = await _connection(stack, admin)
    assert shown.status == resources_pb2.CONNECTION_STATUS_ACTIVE and shown.ultimo_erro == ""
    assert await _alerts(stack, admin) == []
    [resolved] = await _alerts(stack, admin, opened=False)
    assert resolved.details["resolvido_em"]


async def test_rejected_app_token_alerts_the_super_admin_not_the_tenants(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant, admin = await _connected(stack, make_tenant, make_caller)
    # Graph's answer when the app token (app id | secret) itself is refused: 190, no subcode.
    await stack.control(
        "faults",
        {"pattern": "debug_token", "kind": "graph_error", "code": 190, "status": 400, "times": 99},
    )
    try:
        assert await _probe(stack, tenant) is Outcome.UNREACHABLE
        assert await _probe(stack, tenant) is Outcome.UNREACHABLE
    finally:
        await _clear_faults(stack)
    assert (await _connection(stack, admin)).status == resources_pb2.CONNECTION_STATUS_ACTIVE
    assert await _alerts(stack, admin) == []
    platform = Caller(role=Role.SUPER_ADMIN, user_id=uuid.uuid4())
    async with stack.server.deps.db.unit_of_work(platform) as session:
        kinds = list(
            await session.scalars(
                select(Alert.kind).where(Alert.organizacao_id.is_(None), *open_alert())
            )
        )
    assert kinds.count(APP_REJECTED_KIND) == 1


async def test_token_expiring_soon_alerts_once(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant, admin = await _connected(stack, make_tenant, make_caller)
    await stack.control("tokens/expire", {"in_seconds": 3 * DAY})

    assert await _probe(stack, tenant) is Outcome.EXPIRING
    assert await _probe(stack, tenant) is Outcome.EXPIRING
    [alert] = await _alerts(stack, admin)
    assert alert.kind == "token_expiring" and alert.audience == "tenant_admin"
    assert alert.usuario_id == tenant.admin_id  # the one who connected sees it too
    shown = await _connection(stack, admin)
    assert shown.status == resources_pb2.CONNECTION_STATUS_ACTIVE
    left = shown.token_expires_at.ToDatetime(dt.UTC) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=2) < left <= dt.timedelta(days=3)

    await stack.authorize(admin)  # a fresh 60-day token answers the warning
    assert await _alerts(stack, admin) == []
    assert await _probe(stack, tenant) is Outcome.HEALTHY
    assert await _alerts(stack, admin) == []


async def test_graph_outage_leaves_the_status_alone(
    stack: MetaStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant, admin = await _connected(stack, make_tenant, make_caller)
    before = await _connection(stack, admin)
    await stack.control(
        "faults", {"pattern": "debug_token", "kind": "server_error", "status": 503, "times": 99}
    )

    assert await _probe(stack, tenant) is Outcome.UNREACHABLE
    after = await _connection(stack, admin)
    assert after.status == resources_pb2.CONNECTION_STATUS_ACTIVE
    assert after.ultimo_sync == before.ultimo_sync and after.ultimo_erro == ""
    assert await _alerts(stack, admin, opened=False) == []
