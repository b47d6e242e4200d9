"""Who may hold an Instagram account: two tenants' callbacks racing for one account (exactly one
wins, and the account's DMs reach it), a member whose grant is revoked while at Instagram, and
the stage a stranger's first DM opens its pre-opportunity in.

One stack (sandbox, sidecar, server with its worker) serves the module; each test has its
own tenant and its own sandbox account."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from renove.conexoes.v1 import instagram_service_pb2 as pb
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import InstagramConnection, Message, Opportunity
from server.auth.caller import Caller, Role
from server.instagram.views import CANAL
from tests.conftest import MakeCaller, MakeTenant, MigratedDatabase, PgServer, Tenant
from tests.e2e.test_instagram_e2e import _account
from tests.integration.meta_leads_support import (
    isolated_database,
    make_pipeline,
    owner_engine_for,
)
from tests.support.instagram_stack import InstagramStack, instagram_stack
from tests.support.whatsapp_stack import poll


@pytest.fixture(scope="module")
async def database(pg: PgServer) -> AsyncIterator[MigratedDatabase]:
    async with isolated_database(pg) as fresh:
        yield fresh


@pytest.fixture(scope="module")
async def owner_engine(database: MigratedDatabase) -> AsyncIterator[AsyncEngine]:
    async with owner_engine_for(database) as engine:
        yield engine


@pytest.fixture(scope="module")
async def stack(
    database: MigratedDatabase, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[InstagramStack]:
    data = str(tmp_path_factory.mktemp("instagram-connecting"))
    async with instagram_stack(database.owner_url, data) as running:
        await running.set_instagram_app()
        yield running


async def _callback_of(stack: InstagramStack, caller: Caller, browser: httpx.AsyncClient) -> str:
    """The browser's way up to Instagram's redirect back (its own binding cookie)."""
    token = stack.server.token(caller)
    answer = await browser.get(
        f"{stack.sidecar_url}/api/v1/conexoes/instagram/auth-url",
        headers={"authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text
    answer = await browser.get(answer.json()["auth_url"])
    assert answer.status_code == 302
    return str(answer.headers["location"])


def _landed(answer: httpx.Response) -> dict[str, str]:
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    return {k: v[0] for k, v in query.items()}


async def _holders(owner_engine: AsyncEngine, account: str) -> list[uuid.UUID]:
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT organizacao_id FROM app_resolve_instagram_account(:a)"), {"a": account}
        )
        return [r.organizacao_id for r in rows]


async def _grant(owner_engine: AsyncEngine, tenant: Tenant, value: bool) -> None:
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
        )
        await conn.execute(
            text(
                "UPDATE usuarios SET permissoes_conexoes = jsonb_build_object("
                "'instagram_direct', CAST(:v AS boolean)) WHERE id = :u"
            ),
            {"u": tenant.member_id, "v": value},
        )


async def test_two_tenants_racing_for_one_account_exactly_one_wins(
    stack: InstagramStack,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    owner_engine: AsyncEngine,
) -> None:
    account = await _account(stack, "loja_disputada")
    await stack.control("dialog", {"account_id": account})
    first, second = await make_tenant(members=0), await make_tenant(members=0)
    admins = {first.id: make_caller(first, Role.ADMIN), second.id: make_caller(second, Role.ADMIN)}
    async with httpx.AsyncClient(timeout=10) as b1, httpx.AsyncClient(timeout=10) as b2:
        c1 = await _callback_of(stack, admins[first.id], b1)
        c2 = await _callback_of(stack, admins[second.id], b2)
        answers = await asyncio.gather(b1.get(c1), b2.get(c2))
    landed = sorted((_landed(a)["status"], _landed(a).get("motivo", "")) for a in answers)
    assert landed == [("erro", "ACCOUNT_IN_USE"), ("ok", "")]
    holders = await _holders(owner_engine, account)
    assert len(holders) == 1
    winner = admins[holders[0]]

    # The account's DMs reach the one holder.
    dm = await stack.dm(account_id=account, text="Quem me atende?")
    await stack.drain()

    async def stored() -> list[Message] | None:
        async with stack.server.deps.db.unit_of_work(winner) as session:
            rows = (
                await session.scalars(
                    select(Message).where(Message.canal == CANAL, Message.direcao == "inbound")
                )
            ).all()
        return list(rows) or None

    (message,) = await poll(stored)
    assert message.conteudo == "Quem me atende?"
    assert message.metadata_["sender_id"] == dm["sender_id"]


async def test_a_grant_revoked_during_the_login_refuses_the_connection(
    stack: InstagramStack,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    owner_engine: AsyncEngine,
) -> None:
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    await _grant(owner_engine, tenant, True)
    account = await _account(stack, "loja_revogada")
    await stack.control("dialog", {"account_id": account})
    async with httpx.AsyncClient(timeout=10) as browser:
        callback = await _callback_of(stack, member, browser)
        await _grant(owner_engine, tenant, False)  # while the member is at Instagram
        landed = _landed(await browser.get(callback))
    assert (landed["status"], landed["motivo"]) == ("erro", "PERMISSION_NOT_GRANTED")
    assert await _holders(owner_engine, account) == []
    async with stack.server.deps.db.unit_of_work(member) as session:
        assert await session.scalar(select(InstagramConnection)) is None


async def test_the_pre_opportunity_lands_in_the_configured_stage(
    stack: InstagramStack,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    owner_engine: AsyncEngine,
) -> None:
    tenant = await make_tenant(members=1)
    admin = make_caller(tenant, Role.ADMIN)
    member = make_caller(tenant, Role.MEMBER)
    await _grant(owner_engine, tenant, True)
    funil, first_stage, second_stage = await make_pipeline(owner_engine, tenant.id)
    _, other_stage, _ = await make_pipeline(owner_engine, tenant.id)
    account = await _account(stack, "loja_funil")
    landed = await stack.authorize(member, account_id=account)
    assert landed["status"] == "ok", landed

    async def refused(caller: Caller, **values: str) -> list[str]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.stub.UpdateInstagramSettings(
                pb.UpdateInstagramSettingsRequest(**values), metadata=stack.md(caller)
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        status = rpc_status.from_call(err.value)
        assert status is not None
        fields = []
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                fields += [v.field for v in bad.field_violations]
        return fields

    assert await refused(member, funil_id=str(funil)) == ["etapa_id"]
    assert await refused(member, funil_id=str(uuid.uuid4()), etapa_id=str(first_stage)) == [
        "funil_id"
    ]
    assert await refused(member, funil_id=str(funil), etapa_id=str(other_stage)) == ["etapa_id"]
    assert await refused(member, funil_id="nao-e-uuid", etapa_id=str(first_stage)) == ["funil_id"]
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stack.stub.UpdateInstagramSettings(
            pb.UpdateInstagramSettingsRequest(
                funil_id=str(funil), etapa_id=str(second_stage), usuario_id=str(tenant.admin_id)
            ),
            metadata=stack.md(member),
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    got = await stack.stub.GetInstagramConnection(
        pb.GetInstagramConnectionRequest(), metadata=stack.md(member)
    )
    assert (got.connection.funil_id, got.connection.etapa_id) == ("", "")  # nothing changed

    # The admin sets the member's connection to the second stage of the first pipeline.
    set_ = await stack.stub.UpdateInstagramSettings(
        pb.UpdateInstagramSettingsRequest(
            funil_id=str(funil), etapa_id=str(second_stage), usuario_id=str(tenant.member_id)
        ),
        metadata=stack.md(admin),
    )
    assert (set_.connection.funil_id, set_.connection.etapa_id) == (str(funil), str(second_stage))

    await stack.dm(account_id=account, text="Quero um orcamento")
    await stack.drain()

    async def opened() -> Opportunity | None:
        async with stack.server.deps.db.unit_of_work(member) as session:
            found: Opportunity | None = await session.scalar(select(Opportunity))
        return found

    opportunity = await poll(opened)
    assert (opportunity.funil_id, opportunity.etapa_id) == (funil, second_stage)
