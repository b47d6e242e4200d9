"""The server as an operator sees it: health, reflection, graceful shutdown, secrets at rest."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sqlalchemy import select, update

from db.models import MetaConnection
from server.auth.caller import Role
from server.security.cipher import DecryptionError, SecretContext
from tests.conftest import MigratedDatabase
from tests.support.grpc_server import TEST_ENCRYPTION_KEYS, TEST_JWT_SECRET, RunningServer
from tests.support.ports import free_loopback_port

SERVICES = {
    f"renove.conexoes.v1.{name}"
    for name in (
        "WhatsAppService",
        "MetaLeadsService",
        "ConversionsService",
        "AudiencesService",
        "GoogleCalendarService",
        "EmailService",
        "InstagramService",
        "ConnectionsService",
        "WebhookIngressService",
        "CrmEventsService",
    )
}
ROOT = Path(__file__).resolve().parents[2]


async def test_health_reports_serving_for_every_service(server: RunningServer) -> None:
    stub = health_pb2_grpc.HealthStub(server.channel)
    for name in ["", *sorted(SERVICES)]:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name


async def test_reflection_lists_every_service(server: RunningServer) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    reply = await call.read()
    call.cancel()
    listed = {s.name for s in reply.list_services_response.service}
    assert listed >= SERVICES | {"grpc.health.v1.Health"}


async def test_ciphertext_moved_to_another_tenant_does_not_decrypt(
    server: RunningServer, make_tenant, make_caller
) -> None:
    a, b = await make_tenant(members=0), await make_tenant(members=0)
    keyring = server.deps.keyring
    for tenant in (a, b):
        caller = make_caller(tenant, Role.ADMIN)
        async with server.deps.db.unit_of_work(caller) as session:
            token = keyring.encrypt(
                f"EAA-token-of-{tenant.id}",
                SecretContext("conexoes_meta", "access_token_encrypted", tenant.id),
            )
            session.add(MetaConnection(organizacao_id=tenant.id, access_token_encrypted=token))
    async with server.deps.db.unit_of_work(make_caller(a, Role.ADMIN)) as session:
        stolen = await session.scalar(select(MetaConnection.access_token_encrypted))
    assert stolen is not None
    async with server.deps.db.unit_of_work(make_caller(b, Role.ADMIN)) as session:
        await session.execute(update(MetaConnection).values(access_token_encrypted=stolen))
        moved = await session.scalar(select(MetaConnection.access_token_encrypted))
    with pytest.raises(DecryptionError):
        keyring.decrypt(moved, SecretContext("conexoes_meta", "access_token_encrypted", b.id))
    assert (
        keyring.decrypt(stolen, SecretContext("conexoes_meta", "access_token_encrypted", a.id))
        == f"EAA-token-of-{a.id}"
    )


def _free_port() -> int:
    return free_loopback_port()


async def test_sigterm_drains_and_exits_cleanly(database: MigratedDatabase, tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database.owner_url,
        "CONEXOES_GRPC_ADDR": f"127.0.0.1:{port}",
        "CONEXOES_JWT_SECRET": TEST_JWT_SECRET,
        "CONEXOES_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEYS,
        "CONEXOES_DATA_DIR": str(tmp_path),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        "serve",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(200):
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("server did not become healthy")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.stdout is not None
    output = (await proc.stdout.read()).decode()
    assert "shutting down" in output


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        (("CONEXOES_JWT_SECRET",), "CONEXOES_JWT_SECRET"),
        (("CONEXOES_ENCRYPTION_KEYS",), "CONEXOES_ENCRYPTION_KEYS"),
        (("CONEXOES_JWT_SECRET", "CONEXOES_ENCRYPTION_KEYS"), "CONEXOES_ENCRYPTION_KEYS"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "worker"])
async def test_production_refuses_development_secrets(
    tmp_path: Path, command: str, missing: tuple[str, ...], named: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONEXOES_")}
    env.update(
        CONEXOES_JWT_SECRET=TEST_JWT_SECRET,
        CONEXOES_ENCRYPTION_KEYS=TEST_ENCRYPTION_KEYS,
        CONEXOES_DATA_DIR=str(tmp_path),
        # Never reached: the refusal comes before any connection.
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
    )
    for name in missing:
        env.pop(name)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", command, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 1, (out, err)
    assert named in err.decode() and "make run" in err.decode()
    assert not (tmp_path / "dev-encryption-key").exists()
