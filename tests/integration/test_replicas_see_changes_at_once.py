"""Two server replicas (this process and a real `python -m server serve`) on one database: a
change made through one is what the other answers on the very next call. Nothing about a
caller's grants or a WhatsApp session is cached per process: a revoked grant is refused and a
disconnected session reads as disconnected at once, whichever replica is asked."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from renove.conexoes.v1 import connections_service_pb2 as cpb
from renove.conexoes.v1 import connections_service_pb2_grpc as cpb_grpc
from renove.conexoes.v1 import meta_leads_service_pb2 as mpb
from renove.conexoes.v1 import meta_leads_service_pb2_grpc as mpb_grpc
from renove.conexoes.v1 import whatsapp_service_pb2 as wpb
from renove.conexoes.v1 import whatsapp_service_pb2_grpc as wpb_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.auth.caller import Role
from server.security.cipher import Keyring
from tests.conftest import ROOT, TEST_DATA, MakeCaller, MakeTenant, MigratedDatabase
from tests.support.grpc_server import TEST_JWT_SECRET, TEST_SERVICE_SECRET, RunningServer
from tests.support.ports import free_loopback_port


@pytest.fixture(scope="module")
async def replica(database: MigratedDatabase) -> AsyncIterator[grpc.aio.Channel]:
    """A second server process on the same database (no worker: it only answers calls)."""
    address = f"127.0.0.1:{free_loopback_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONEXOES_")}
    env.update(
        DATABASE_URL=database.owner_url,
        CONEXOES_DATA_DIR=str(TEST_DATA / "test-secrets"),
        CONEXOES_GRPC_ADDR=address,
        CONEXOES_JWT_SECRET=TEST_JWT_SECRET,
        CONEXOES_SERVICE_TOKEN_SECRET=TEST_SERVICE_SECRET,
        CONEXOES_ENCRYPTION_KEYS=Keyring.generate_key_spec("replica"),
        CONEXOES_WORKER_CONCURRENCY="0",
        CONEXOES_LOG_LEVEL="WARNING",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    channel = grpc.aio.insecure_channel(address)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        async with asyncio.timeout(60):
            while True:
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.aio.AioRpcError:
                    pass
                assert process.returncode is None, "the replica exited"
                await asyncio.sleep(0.2)
        yield channel
    finally:
        await channel.close()
        process.terminate()
        await process.wait()


async def test_a_revoked_grant_is_refused_by_the_other_replica_at_once(
    server: RunningServer, replica: grpc.aio.Channel, make_tenant: MakeTenant,
    make_caller: MakeCaller,
) -> None:  # fmt: skip
    tenant = await make_tenant()
    admin, member = make_caller(tenant, Role.ADMIN), make_caller(tenant, Role.MEMBER)
    grants = cpb_grpc.ConnectionsServiceStub(server.channel)
    on_replica = mpb_grpc.MetaLeadsServiceStub(replica)
    member_md = server.metadata(member)

    async def replica_answer() -> grpc.StatusCode:
        try:
            await on_replica.GetMetaConnection(mpb.GetMetaConnectionRequest(), metadata=member_md)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    assert await replica_answer() is grpc.StatusCode.PERMISSION_DENIED
    for granted in (True, False, True, False):
        await grants.UpdateMemberPermissions(
            cpb.UpdateMemberPermissionsRequest(
                usuario_id=str(tenant.member_id), meta_lead_ads=granted
            ),
            metadata=server.metadata(admin),
        )
        answer = await replica_answer()
        if granted:
            assert answer is not grpc.StatusCode.PERMISSION_DENIED
        else:
            assert answer is grpc.StatusCode.PERMISSION_DENIED


async def test_a_disconnected_session_reads_disconnected_on_the_other_replica_at_once(
    server: RunningServer, replica: grpc.aio.Channel, make_tenant: MakeTenant,
    make_caller: MakeCaller, owner_engine: AsyncEngine,
) -> None:  # fmt: skip
    tenant = await make_tenant()
    member = make_caller(tenant, Role.MEMBER)
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
        )
        await conn.execute(
            text(
                "INSERT INTO sessoes_whatsapp (organizacao_id, usuario_id, session_name, status)"
                " VALUES (:org, :user, :name, 'connected')"
            ),
            {"org": tenant.id, "user": tenant.member_id, "name": f"wpp-{uuid.uuid4().hex[:8]}"},
        )
    md = server.metadata(member)
    on_replica = wpb_grpc.WhatsAppServiceStub(replica)
    before = await on_replica.GetWhatsAppStatus(wpb.GetWhatsAppStatusRequest(), metadata=md)
    assert before.session.status == wpb.WAHA_SESSION_STATUS_CONNECTED
    await wpb_grpc.WhatsAppServiceStub(server.channel).DisconnectWhatsApp(
        wpb.DisconnectWhatsAppRequest(), metadata=md
    )
    after = await on_replica.GetWhatsAppStatus(wpb.GetWhatsAppStatusRequest(), metadata=md)
    assert after.session.status == wpb.WAHA_SESSION_STATUS_DISCONNECTED
