"""The token machinery on a Google Calendar connection, against the sandbox's token endpoint:
refresh on use near expiry, ahead from the scheduler, one refresh at a time, cooldown and
final state after failures, invalid_grant, and recovery."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, text

from db.models import Alert, GoogleConnection
from server.auth.caller import Caller, Role
from server.google_oauth import google_token_kind
from server.providers.errors import ProviderServerError
from server.tokens import RefreshCoolingDown, TokenKeeper, TokenRevoked
from tests.conftest import MakeTenant, MigratedDatabase, Tenant
from tests.support.databases import isolated_database_fixture, isolated_owner_engine_fixture
from tests.support.google_stack import GoogleStack, google_stack

database = isolated_database_fixture()
owner_engine = isolated_owner_engine_fixture()


@pytest.fixture(scope="module")
async def stack(
    database: MigratedDatabase, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GoogleStack]:
    async with google_stack(database.owner_url, str(tmp_path_factory.mktemp("tok"))) as s:
        yield s


def _keeper(stack: GoogleStack) -> TokenKeeper:
    return TokenKeeper(stack.server.deps, google_token_kind("GOOGLE_CALENDAR", GoogleConnection))


async def _connection(stack: GoogleStack, tenant: Tenant, user: uuid.UUID) -> uuid.UUID:
    keeper = _keeper(stack)
    access, refresh = await stack.grant()
    conn_id = uuid.uuid4()
    async with stack.server.deps.db.unit_of_work(
        Caller(role=Role.SERVICE, tenant_id=tenant.id)
    ) as session:
        session.add(
            GoogleConnection(
                id=conn_id,
                organizacao_id=tenant.id,
                usuario_id=user,
                access_token_encrypted=keeper.encrypt("access_token_encrypted", access, tenant.id),
                refresh_token_encrypted=keeper.encrypt(
                    "refresh_token_encrypted", refresh, tenant.id
                ),
                status="active",
            )
        )
    await stack.expire_in(tenant.id, conn_id, 60)
    return conn_id


async def _row(stack: GoogleStack, tenant: Tenant, conn_id: uuid.UUID) -> GoogleConnection:
    async with stack.server.deps.db.unit_of_work(
        Caller(role=Role.SERVICE, tenant_id=tenant.id)
    ) as session:
        row = await session.scalar(select(GoogleConnection).where(GoogleConnection.id == conn_id))
    assert row is not None
    return row


async def _refreshes(stack: GoogleStack) -> int:
    return sum(g["refreshes"] for g in await stack.control_get("grants"))


async def test_a_fresh_token_is_used_as_is_and_a_near_one_is_refreshed(
    stack: GoogleStack, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    conn_id = await _connection(stack, tenant, tenant.member_id)
    keeper = _keeper(stack)
    before = await _refreshes(stack)
    first = await keeper.access_token(tenant.id, conn_id)
    assert await _refreshes(stack) == before
    await stack.expire_in(tenant.id, conn_id, 5)  # within the 15-minute window
    # Two users of the token at once: one refresh, both get the new token.
    second, third = await asyncio.gather(
        keeper.access_token(tenant.id, conn_id), keeper.access_token(tenant.id, conn_id)
    )
    assert second == third != first
    assert await _refreshes(stack) == before + 1
    row = await _row(stack, tenant, conn_id)
    assert row.token_expires_at is not None and row.refresh_falhas == 0


async def test_the_scheduler_refreshes_ahead_of_expiry(
    stack: GoogleStack, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    soon = await _connection(stack, tenant, tenant.member_id)
    later = await _connection(stack, tenant, tenant.admin_id)
    await stack.expire_in(tenant.id, soon, 20)  # within the 30-minute horizon, idle
    outcomes = await _keeper(stack).refresh_due()
    assert outcomes.get(soon) == "refreshed"
    assert later not in outcomes


async def test_outages_cool_down_then_reach_the_final_state_and_recover(
    stack: GoogleStack, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    conn_id = await _connection(stack, tenant, tenant.member_id)
    keeper = _keeper(stack)
    await stack.expire_in(tenant.id, conn_id, 1)
    await stack.control("token-endpoint/fail", {"status": 503, "times": 10})
    with pytest.raises(ProviderServerError):
        await keeper.access_token(tenant.id, conn_id)
    with pytest.raises(RefreshCoolingDown) as cooling:  # no second call to Google meanwhile
        await keeper.access_token(tenant.id, conn_id)
    assert cooling.value.retry_after and 0 < cooling.value.retry_after <= 60
    row = await _row(stack, tenant, conn_id)
    assert row.refresh_falhas == 1 and row.status == "active"
    for _ in range(4):  # time passes: each cooldown is over when the next try comes
        await _unblock(stack, tenant, conn_id)
        with pytest.raises(ProviderServerError):
            await keeper.refresh(tenant.id, conn_id)
    row = await _row(stack, tenant, conn_id)
    assert row.refresh_falhas == 5 and row.status == "error"
    assert await _open_alerts(stack, tenant, conn_id) == 1
    await stack.control("token-endpoint/fail", {"times": 0})
    await _unblock(stack, tenant, conn_id)
    bus = stack.server.deps.bus
    async with bus.subscribe(lambda e: e.tenant_id == tenant.id) as events:
        # The scheduler keeps trying a broken connection; success is a recovery.
        outcomes = await keeper.refresh_due()
        assert outcomes[conn_id] == "refreshed"
        async with asyncio.timeout(5):
            async for event in events:
                if event.kind == "CONNECTION_CHANGED":
                    assert event.data["status"] == "active"
                    assert event.data["requires_reconnect"] is False
                    break
    row = await _row(stack, tenant, conn_id)
    assert row.status == "active" and row.refresh_falhas == 0 and row.ultimo_erro is None
    assert await _open_alerts(stack, tenant, conn_id) == 0


async def test_invalid_grant_revokes_and_alerts_the_owner(
    stack: GoogleStack, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    conn_id = await _connection(stack, tenant, tenant.member_id)
    await stack.control("grants/revoke")
    await stack.expire_in(tenant.id, conn_id, 1)
    with pytest.raises(TokenRevoked):
        await _keeper(stack).access_token(tenant.id, conn_id)
    row = await _row(stack, tenant, conn_id)
    assert row.status == "revoked" and row.ultimo_erro
    with pytest.raises(TokenRevoked):  # no more calls to Google for a dead grant
        await _keeper(stack).access_token(tenant.id, conn_id)
    async with stack.server.deps.db.unit_of_work(
        Caller(role=Role.SERVICE, tenant_id=tenant.id)
    ) as session:
        alert = await session.scalar(
            select(Alert).where(Alert.details["entidade_id"].astext == str(conn_id))
        )
    assert alert is not None and alert.usuario_id == tenant.member_id
    assert alert.kind == "token_refresh_failed"


async def _unblock(stack: GoogleStack, tenant: Tenant, conn_id: uuid.UUID) -> None:
    async with stack.server.deps.db.unit_of_work(
        Caller(role=Role.SERVICE, tenant_id=tenant.id)
    ) as session:
        await session.execute(
            text("UPDATE conexoes_google SET refresh_bloqueado_ate = now() WHERE id = :id"),
            {"id": conn_id},
        )


async def _open_alerts(stack: GoogleStack, tenant: Tenant, conn_id: uuid.UUID) -> int:
    async with stack.server.deps.db.unit_of_work(
        Caller(role=Role.SERVICE, tenant_id=tenant.id)
    ) as session:
        alerts = list(
            await session.scalars(
                select(Alert).where(
                    Alert.details["entidade_id"].astext == str(conn_id),
                    Alert.details["resolvido_em"].astext.is_(None),
                )
            )
        )
    return len(alerts)
