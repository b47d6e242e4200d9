"""WhatsApp end to end: real gRPC server(s), real sidecar, WAHA sandbox and PostgreSQL.

connect -> QR (valid PNG) -> scan -> stream shows connected with the phone -> inbound message
in conversations and on Connections.WatchEvents -> reply reaches WAHA -> disconnect; then the
failure paths: bad HMAC, unknown session, duplicate webhook, WAHA statuses from the future,
WAHA down (retries, breaker, alert), another server process streaming, server restart.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import grpc
import pytest
from renove.conexoes.v1 import connections_service_pb2 as cpb
from renove.conexoes.v1 import connections_service_pb2_grpc as cpb_grpc
from renove.conexoes.v1 import whatsapp_service_pb2 as pb
from renove.conexoes.v1 import whatsapp_service_pb2_grpc as pb_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.auth.caller import Role
from tests.conftest import MakeCaller, MakeTenant, MigratedDatabase
from tests.support.databases import isolated_database_fixture, isolated_owner_engine_fixture
from tests.support.grpc_server import running_server
from tests.support.whatsapp_stack import (
    WAHA_HMAC_KEY,
    Stack,
    poll,
    wait_waha_status,
    whatsapp_stack,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# A database of its own: other modules' servers run workers that could claim our jobs.
database = isolated_database_fixture()
owner_engine = isolated_owner_engine_fixture()


@pytest.fixture(scope="module")
async def stack(
    database: MigratedDatabase, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    data = str(tmp_path_factory.mktemp("wa-e2e"))
    async with whatsapp_stack(database.owner_url, data, servers=2) as running:
        yield running


async def _next_session(stream: grpc.aio.UnaryStreamCall, status: int) -> pb.WhatsAppSession:
    async with asyncio.timeout(10):
        while True:
            message = await stream.read()
            if message.WhichOneof("kind") == "session" and message.session.status == status:
                return message.session


def _signed(envelope: dict[str, object], key: str = WAHA_HMAC_KEY) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(envelope, separators=(",", ":")).encode()
    digest = hmac.new(key.encode(), body, hashlib.sha512).hexdigest()
    return body, {
        "content-type": "application/json",
        "x-webhook-hmac": digest,
        "x-webhook-hmac-algorithm": "sha512",
    }


def _envelope(session: str, tenant: uuid.UUID, user: uuid.UUID, event: str, payload: dict) -> dict:  # type: ignore[type-arg]
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "timestamp": int(time.time() * 1000),
        "event": event,
        "session": session,
        "metadata": {"organizacao_id": str(tenant), "usuario_id": str(user)},
        "me": None,
        "payload": payload,
        "engine": "GOWS",
        "environment": {"version": "2026.7.1", "engine": "GOWS", "tier": "PLUS"},
    }


async def test_whatsapp_end_to_end(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant(members=1)
    member, admin = make_caller(tenant, Role.MEMBER), make_caller(tenant, Role.ADMIN)
    # The admin watches every session of the tenant from the *second* server process: its
    # only way to learn of changes is PostgreSQL NOTIFY (it runs no worker).
    watch_all = stack.stub(1).WatchWhatsAppStatus(
        pb.WatchWhatsAppStatusRequest(all_sessions=True), metadata=stack.md(admin)
    )
    assert (await watch_all.read()).WhichOneof("kind") == "snapshot"
    events = cpb_grpc.ConnectionsServiceStub(stack.servers[1].channel).WatchEvents(
        cpb.WatchEventsRequest(kinds=[cpb.EVENT_KIND_MESSAGE_RECEIVED]), metadata=stack.md(member)
    )

    started = await stack.start(member)
    await wait_waha_status(stack, started.session_name, "SCAN_QR_CODE")
    qr = await stack.stub().GetWhatsAppQrCode(
        pb.GetWhatsAppQrCodeRequest(), metadata=stack.md(member)
    )
    assert base64.b64decode(qr.qr_code.split(",", 1)[1]).startswith(PNG_MAGIC)
    await _next_session(watch_all, pb.WAHA_SESSION_STATUS_QR_PENDING)

    await stack.control(
        f"sessions/{started.session_name}/scan", {"phone": "5511966660001", "pushName": "Bia"}
    )
    connected = await _next_session(watch_all, pb.WAHA_SESSION_STATUS_CONNECTED)
    assert connected.phone_number == "+5511966660001"
    assert connected.usuario_id == str(tenant.member_id)

    await stack.control(
        f"sessions/{started.session_name}/inbound",
        {"from": "5521955550001", "body": "Bom dia", "pushName": "Lead"},
    )

    async def conversation() -> pb.WhatsAppConversation | None:
        response = await stack.stub().ListWhatsAppConversations(
            pb.ListWhatsAppConversationsRequest(), metadata=stack.md(member)
        )
        return response.conversations[0] if response.conversations else None

    found = await poll(conversation)
    assert found.phone_number == "+5521955550001" and found.ultima_mensagem.body == "Bom dia"
    try:
        async with asyncio.timeout(10):
            while True:
                message = await events.read()
                if message.WhichOneof("kind") == "event":
                    break
        assert message.event.kind == cpb.EVENT_KIND_MESSAGE_RECEIVED
        assert message.event.payload["contato_id"] == found.contato_id
    except grpc.aio.AioRpcError as exc:  # WatchEvents belongs to another room
        assert exc.code() == grpc.StatusCode.UNIMPLEMENTED
    events.cancel()

    await stack.stub().SendWhatsAppMessage(
        pb.SendWhatsAppMessageRequest(to="+5521955550001", text="Bom dia! Como posso ajudar?"),
        metadata=stack.md(member),
    )

    async def reply() -> list[dict[str, object]] | None:
        rows = await stack.control_get("messages", session=started.session_name, source="api")
        return rows or None

    (sent,) = await poll(reply)
    assert sent["message"]["to"] == "5521955550001@c.us"

    done = await stack.stub().DisconnectWhatsApp(
        pb.DisconnectWhatsAppRequest(), metadata=stack.md(member)
    )
    assert done.session.status == pb.WAHA_SESSION_STATUS_DISCONNECTED
    await _next_session(watch_all, pb.WAHA_SESSION_STATUS_DISCONNECTED)
    watch_all.cancel()
    assert not [s for s in await stack.control_get("sessions") if s["name"] == started.session_name]


async def test_webhook_failure_paths(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    name = await stack.connect(member, "5511966660002")
    url = f"{stack.sidecar_url}/webhooks/waha/{tenant.id}"
    inbound = {
        "id": f"false_5531944440002@c.us_{uuid.uuid4().hex[:16].upper()}",
        "timestamp": int(time.time()),
        "from": "5531944440002@c.us",
        "fromMe": False,
        "to": "5511966660002@c.us",
        "body": "uma vez so",
        "hasMedia": False,
        "ack": 1,
    }
    envelope = _envelope(name, tenant.id, tenant.member_id, "message", inbound)

    body, headers = _signed(envelope, key="not-the-key")
    assert (await stack.http.post(url, content=body, headers=headers)).status_code in (401, 403)

    unknown = _envelope("wpp-unknown-session", tenant.id, tenant.member_id, "message", inbound)
    body, headers = _signed(unknown)
    refused = await stack.http.post(url, content=body, headers=headers)
    assert refused.status_code == 403 and "unknown_session" in refused.text

    body, headers = _signed(envelope)
    first = await stack.http.post(url, content=body, headers=headers)
    again = await stack.http.post(url, content=body, headers=headers)
    assert first.status_code == 200 and again.status_code == 200

    async def stored() -> int | None:
        async with owner_engine.begin() as conn:
            await conn.execute(
                text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
            )
            count = await conn.scalar(
                text("SELECT count(*) FROM conversas WHERE external_id = :e"), {"e": inbound["id"]}
            )
        return count or None

    assert await poll(stored) == 1
    await asyncio.sleep(0.5)  # a second job would have run by now
    assert await stored() == 1
    assert (await stack.status(member)).total_mensagens_recebidas == 1

    # A status WAHA added after this code was written is "not ready", not a crash.
    future = _envelope(
        name, tenant.id, tenant.member_id, "session.status", {"status": "PASSKEY_REQUIRED"}
    )
    body, headers = _signed(future)
    assert (await stack.http.post(url, content=body, headers=headers)).status_code == 200
    await stack.wait_status(member, pb.WAHA_SESSION_STATUS_CONNECTING)


async def test_restart_mid_stream_resubscribe_gets_snapshot(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    await stack.connect(member, "5511966660003")
    settings = replace(stack.servers[1].deps.settings, worker_concurrency=0)
    async with running_server(settings) as extra:
        stub = pb_grpc.WhatsAppServiceStub(extra.channel)
        stream = stub.WatchWhatsAppStatus(
            pb.WatchWhatsAppStatusRequest(), metadata=extra.metadata(member)
        )
        assert (await stream.read()).snapshot.sessions[0].status == (
            pb.WAHA_SESSION_STATUS_CONNECTED
        )
        await extra.app.stop(grace=1.0)  # the server goes away mid-stream
        with pytest.raises(grpc.aio.AioRpcError):
            async with asyncio.timeout(10):
                while True:
                    if await stream.read() == grpc.aio.EOF:
                        raise grpc.aio.AioRpcError(
                            grpc.StatusCode.UNAVAILABLE, None, None, "stream ended"
                        )
    async with running_server(settings) as restarted:
        stub = pb_grpc.WhatsAppServiceStub(restarted.channel)
        stream = stub.WatchWhatsAppStatus(
            pb.WatchWhatsAppStatusRequest(), metadata=restarted.metadata(member)
        )
        snapshot = (await stream.read()).snapshot
        assert snapshot.sessions[0].status == pb.WAHA_SESSION_STATUS_CONNECTED
        assert snapshot.sessions[0].phone_number == "+5511966660003"
        heartbeat = await stream.read()  # idle: heartbeats keep it alive
        assert heartbeat.WhichOneof("kind") == "heartbeat"
        stream.cancel()


async def test_waha_down_retries_then_opens_the_breaker(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    """Last in the module: it leaves the first server's WAHA breaker open."""
    tenant = await make_tenant(members=2)
    sender = make_caller(tenant, Role.MEMBER, user=tenant.members[0])
    other = make_caller(tenant, Role.MEMBER, user=tenant.members[1])
    await stack.connect(sender, "5511966660004")
    # One outage on sendText: the send job fails, is retried after its backoff, succeeds.
    await stack.control("faults", {"status": 503, "count": 1, "path": "/api/sendText"})
    sent = await stack.stub().SendWhatsAppMessage(
        pb.SendWhatsAppMessageRequest(to="+5511955550004", text="retry me"),
        metadata=stack.md(sender),
    )

    async def job_row() -> tuple[str, int, str | None] | None:
        async with owner_engine.begin() as conn:
            await conn.execute(
                text("SELECT set_config('app.current_tenant', :t, true)"),
                {"t": str(tenant.id)},
            )
            row = (
                await conn.execute(
                    text(
                        "SELECT status, tentativas, ultimo_erro FROM eventos_pendentes "
                        "WHERE id = :id"
                    ),
                    {"id": sent.job_id},
                )
            ).one()
        return (row.status, row.tentativas, row.ultimo_erro) if row.status == "completed" else None

    _status, attempts, _ = await poll(job_row, within=15)
    assert attempts == 2
    rows = await stack.control_get("messages", source="api")
    assert "retry me" in [r["message"]["body"] for r in rows]

    # WAHA down for good: three outages open the breaker; then calls stop at once.
    await stack.control("faults", {"status": 503, "count": 100})
    for _ in range(3):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stack.start(other)
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stack.start(other)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "CIRCUIT_OPEN" in str(exc.value.trailing_metadata()) or "paused" in str(
        exc.value.details()
    )
    await stack.server.deps.breakers.drain()

    async def alert() -> int | None:
        async with owner_engine.begin() as conn:
            await conn.execute(text("SELECT set_config('app.current_role', 'super_admin', true)"))
            count = await conn.scalar(
                text(
                    "SELECT count(*) FROM alerts WHERE organizacao_id IS NULL "
                    "AND kind = 'circuit_open' AND details->>'provider' = 'waha'"
                )
            )
        return count or None

    assert await poll(alert) >= 1
    await stack.http.delete(f"{stack.waha_url}/_control/faults")
