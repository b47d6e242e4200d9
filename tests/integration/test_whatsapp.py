"""WhatsApp through the real gRPC server, with WAHA's sandbox sending real webhooks through
the real sidecar: sessions, QR, stream, messages, permissions, QR expiry, health check."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from renove.conexoes.v1 import resources_pb2
from renove.conexoes.v1 import whatsapp_service_pb2 as pb
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import Alert
from server.auth.caller import Caller, Role
from server.whatsapp.connection import session_name
from server.whatsapp.health import check_sessions
from tests.conftest import MakeCaller, MakeTenant, MigratedDatabase
from tests.support.databases import isolated_database_fixture, isolated_owner_engine_fixture
from tests.support.jobs import rows
from tests.support.whatsapp_stack import Stack, poll, wait_waha_status, whatsapp_stack

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# A database of its own: other modules' servers run workers that could claim our jobs.
database = isolated_database_fixture()
owner_engine = isolated_owner_engine_fixture()


@pytest.fixture(scope="module")
async def stack(
    database: MigratedDatabase, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    data = str(tmp_path_factory.mktemp("wa-int"))
    async with whatsapp_stack(database.owner_url, data, whatsapp_max_qr_rotations=2) as running:
        yield running


async def _conversations(stack: Stack, caller) -> list[pb.WhatsAppConversation]:  # type: ignore[no-untyped-def]
    response = await stack.stub().ListWhatsAppConversations(
        pb.ListWhatsAppConversationsRequest(), metadata=stack.md(caller)
    )
    return list(response.conversations)


def test_session_name_is_short_deterministic_and_distinct() -> None:
    org, a, b = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    name = session_name(org, a)
    assert name == session_name(org, a) and name != session_name(org, b)
    assert name.startswith("wpp-") and len(name) <= 54


async def test_connect_via_qr_streams_every_step(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    stream = stack.stub().WatchWhatsAppStatus(
        pb.WatchWhatsAppStatusRequest(), metadata=stack.md(member)
    )
    first = await stream.read()
    assert first.WhichOneof("kind") == "snapshot"
    assert first.snapshot.sessions[0].status == pb.WAHA_SESSION_STATUS_DISCONNECTED

    started = await stack.start(member)
    assert started.status == pb.WAHA_SESSION_STATUS_QR_PENDING
    assert started.session_name == session_name(tenant.id, tenant.member_id)
    await wait_waha_status(stack, started.session_name, "SCAN_QR_CODE")
    qr = await stack.stub().GetWhatsAppQrCode(
        pb.GetWhatsAppQrCodeRequest(), metadata=stack.md(member)
    )
    prefix = "data:image/png;base64,"
    assert qr.qr_code.startswith(prefix)
    assert base64.b64decode(qr.qr_code[len(prefix) :]).startswith(PNG_MAGIC)
    assert 0 < qr.expires_in <= 60 and qr.qr_value.startswith("2@")

    await stack.control(
        f"sessions/{started.session_name}/scan", {"phone": "5511988880001", "pushName": "Ana"}
    )
    seen: list[int] = []
    async with asyncio.timeout(10):
        while True:
            message = await stream.read()
            if message.WhichOneof("kind") != "session":
                continue
            seen.append(message.session.status)
            if message.session.status == pb.WAHA_SESSION_STATUS_CONNECTED:
                break
    stream.cancel()
    assert pb.WAHA_SESSION_STATUS_QR_PENDING in seen
    assert message.session.phone_number == "+5511988880001"
    assert message.session.phone_name == "Ana"
    status = await stack.status(member)
    assert status.status == pb.WAHA_SESSION_STATUS_CONNECTED and status.HasField("conectado_em")

    # Start again while connected: idempotent, nothing restarted.
    again = await stack.start(member)
    assert again.status == pb.WAHA_SESSION_STATUS_CONNECTED


async def test_inbound_phone_sent_reply_and_acks(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    name = await stack.connect(member, "5511988880002")

    await stack.control(
        f"sessions/{name}/inbound",
        {"from": "5511977770002", "body": "Quero saber o preco", "pushName": "Cliente"},
    )

    async def inbound() -> list[pb.WhatsAppConversation] | None:
        found = await _conversations(stack, member)
        return found or None

    (conversation,) = await poll(inbound)
    assert conversation.phone_number == "+5511977770002"
    assert conversation.contato_nome == "Cliente"
    assert conversation.ultima_mensagem.body == "Quero saber o preco"
    assert conversation.nao_lidas == 1

    await stack.control(f"sessions/{name}/phone-send", {"to": "5511977770002", "body": "Oi!"})

    async def two_messages() -> pb.ListWhatsAppMessagesResponse | None:
        response = await stack.stub().ListWhatsAppMessages(
            pb.ListWhatsAppMessagesRequest(contato_id=conversation.contato_id),
            metadata=stack.md(member),
        )
        return response if len(response.messages) == 2 else None

    messages = (await poll(two_messages)).messages
    assert messages[0].direcao == resources_pb2.MESSAGE_DIRECTION_OUTBOUND
    assert messages[0].body == "Oi!"

    send = pb.SendWhatsAppMessageRequest(
        contato_id=conversation.contato_id, text="Custa 10", request_id=str(uuid.uuid4())
    )
    sent = await stack.stub().SendWhatsAppMessage(send, metadata=stack.md(member))
    assert sent.message.status == resources_pb2.MESSAGE_STATUS_QUEUED and sent.job_id
    # A retry with the same request id answers the same message and queues nothing new.
    again = await stack.stub().SendWhatsAppMessage(send, metadata=stack.md(member))
    assert again == sent

    async def delivered_to_waha() -> list[dict[str, object]] | None:
        rows = await stack.control_get("messages", session=name, source="api")
        return rows or None

    (row,) = await poll(delivered_to_waha)
    assert row["message"]["body"] == "Custa 10"
    wa_id = row["message"]["id"]

    async def sent_status() -> pb.WhatsAppMessage | None:
        response = await stack.stub().ListWhatsAppMessages(
            pb.ListWhatsAppMessagesRequest(contato_id=conversation.contato_id),
            metadata=stack.md(member),
        )
        mine = [m for m in response.messages if m.id == sent.message.id]
        return mine[0] if mine and mine[0].provider_message_id else None

    stored = await poll(sent_status)
    assert stored.provider_message_id == wa_id
    assert stored.status == resources_pb2.MESSAGE_STATUS_SENT

    # Acks only move forward: READ then a late DEVICE leaves READ.
    await stack.control(f"sessions/{name}/ack", {"id": wa_id, "ack": 3})
    await stack.control(f"sessions/{name}/ack", {"id": wa_id, "ack": 2})

    async def read() -> pb.WhatsAppMessage | None:
        message = await sent_status()
        return message if message and message.status == resources_pb2.MESSAGE_STATUS_READ else None

    await poll(read)
    await asyncio.sleep(0.5)
    assert (await sent_status()).status == resources_pb2.MESSAGE_STATUS_READ  # type: ignore[union-attr]
    status = await stack.status(member)
    assert status.total_mensagens_recebidas == 1 and status.total_mensagens_enviadas == 2


async def test_marking_a_conversation_read_tells_waha_and_clears_the_count(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant(members=2)
    member = make_caller(tenant, Role.MEMBER)
    name = await stack.connect(member, "5511988880006")
    for body in ("Oi", "Ainda ai?"):
        await stack.control(
            f"sessions/{name}/inbound", {"from": "5511977770006", "body": body, "pushName": "C"}
        )

    async def two_unread() -> pb.WhatsAppConversation | None:
        found = await _conversations(stack, member)
        return found[0] if found and found[0].nao_lidas == 2 else None

    conversation = await poll(two_unread)
    other = make_caller(tenant, Role.MEMBER, user=tenant.members[1])
    with pytest.raises(grpc.aio.AioRpcError) as err:  # not their conversation
        await stack.stub().MarkWhatsAppConversationRead(
            pb.MarkWhatsAppConversationReadRequest(contato_id=conversation.contato_id),
            metadata=stack.md(other),
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    done = await stack.stub().MarkWhatsAppConversationRead(
        pb.MarkWhatsAppConversationReadRequest(contato_id=conversation.contato_id),
        metadata=stack.md(member),
    )
    assert done.marcadas == 2 and done.whatsapp_notificado
    (seen,) = [s for s in await stack.control_get("seen") if s["session"] == name]
    assert seen["chatId"] == "5511977770006@c.us" and len(seen["messageIds"]) == 2
    assert (await _conversations(stack, member))[0].nao_lidas == 0
    again = await stack.stub().MarkWhatsAppConversationRead(
        pb.MarkWhatsAppConversationReadRequest(contato_id=conversation.contato_id),
        metadata=stack.md(member),
    )
    assert again.marcadas == 0


async def test_unlinking_from_the_phone_is_told_apart_and_alerted(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant(members=2)
    member = make_caller(tenant, Role.MEMBER)
    name = await stack.connect(member, "5511988880007")
    await stack.control(f"sessions/{name}/unlink", {"as": "SCAN_QR_CODE"})
    dropped = await stack.wait_status(member, pb.WAHA_SESSION_STATUS_QR_PENDING)
    assert dropped.motivo_desconexao == pb.WAHA_DISCONNECT_REASON_LOGGED_OUT_FROM_PHONE
    assert dropped.HasField("desconectado_em")
    async with owner_engine.connect() as conn:
        alerts = (
            await conn.execute(
                text("SELECT usuario_id, kind, message FROM alerts WHERE organizacao_id = :t"),
                {"t": tenant.id},
            )
        ).all()
    assert [(a.usuario_id, a.kind) for a in alerts] == [(tenant.member_id, "connection_lost")]
    assert "logged_out_from_phone" in alerts[0].message

    # The other way WAHA shows it: FAILED, and after our restart a QR (the auth is gone).
    other = make_caller(tenant, Role.MEMBER, user=tenant.members[1])
    second = await stack.connect(other, "5511988880012")
    await stack.control(f"sessions/{second}/unlink", {"as": "FAILED"})

    async def unlinked() -> pb.WhatsAppSession | None:
        now = await stack.status(other)
        told = now.motivo_desconexao == pb.WAHA_DISCONNECT_REASON_LOGGED_OUT_FROM_PHONE
        return now if now.status == pb.WAHA_SESSION_STATUS_QR_PENDING and told else None

    shown = await poll(unlinked)
    assert "logged out from the phone" in shown.ultimo_erro
    qr = await stack.stub().GetWhatsAppQrCode(
        pb.GetWhatsAppQrCodeRequest(), metadata=stack.md(member)
    )
    assert qr.qr_code.startswith("data:image/png;base64,")  # a new QR to link again


async def test_a_hidden_id_sender_is_kept_then_merged_when_the_phone_shows(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    name = await stack.connect(member, "5511988880008")
    lid = f"{uuid.uuid4().int % 10**15}@lid"
    await stack.control(
        f"sessions/{name}/inbound", {"from": lid, "body": "Oi, vi o anuncio", "pushName": "Lia"}
    )

    async def one_conversation() -> pb.WhatsAppConversation | None:
        found = await _conversations(stack, member)
        return found[0] if found else None

    hidden = await poll(one_conversation)
    assert hidden.phone_number == "" and hidden.contato_nome == "Lia" and hidden.nao_lidas == 1
    assert (await stack.status(member)).total_mensagens_recebidas == 1  # counted

    # WhatsApp later reveals the sender's phone: one contact, with both messages.
    await stack.control(
        f"sessions/{name}/inbound",
        {"from": lid, "body": "Meu numero", "pushName": "Lia", "senderPn": "5511977770008"},
    )

    async def merged() -> pb.WhatsAppConversation | None:
        found = await _conversations(stack, member)
        return found[0] if len(found) == 1 and found[0].nao_lidas == 2 else None

    conversation = await poll(merged)
    assert conversation.phone_number == "+5511977770008"
    async with owner_engine.connect() as conn:
        contacts = (
            await conn.execute(
                text(
                    "SELECT telefone, whatsapp_lid, deletado_em IS NULL AS live FROM contatos"
                    " WHERE organizacao_id = :t ORDER BY criado_em"
                ),
                {"t": tenant.id},
            )
        ).all()
    assert [(c.telefone, c.whatsapp_lid, c.live) for c in contacts if c.live] == [
        ("+5511977770008", lid, True)
    ]


async def test_a_media_message_keeps_its_file_facts_and_is_retrievable(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant(members=2)
    member = make_caller(tenant, Role.MEMBER)
    name = await stack.connect(member, "5511988880009")
    pdf = b"%PDF-1.4 proposta " + bytes(range(256))
    await stack.control(
        f"sessions/{name}/inbound",
        {
            "from": "5511977770009",
            "body": "Segue a proposta",
            "media": {
                "mimetype": "application/pdf",
                "filename": "proposta.pdf",
                "data": base64.b64encode(pdf).decode(),
            },
        },
    )

    async def stored() -> pb.WhatsAppMessage | None:
        found = await _conversations(stack, member)
        if not found:
            return None
        listed = await stack.stub().ListWhatsAppMessages(
            pb.ListWhatsAppMessagesRequest(contato_id=found[0].contato_id),
            metadata=stack.md(member),
        )
        return listed.messages[0] if listed.messages else None

    message = await poll(stored)
    assert message.body == "Segue a proposta"  # the caption
    assert (message.media.kind, message.media.mimetype, message.media.filename) == (
        "document",
        "application/pdf",
        "proposta.pdf",
    )
    assert message.media.size == len(pdf)
    got = await stack.stub().GetWhatsAppMessageMedia(
        pb.GetWhatsAppMessageMediaRequest(message_id=message.id), metadata=stack.md(member)
    )
    assert got.data == pdf and got.media.mimetype == "application/pdf"

    other = make_caller(tenant, Role.MEMBER, user=tenant.members[1])
    with pytest.raises(grpc.aio.AioRpcError) as err:  # not their conversation
        await stack.stub().GetWhatsAppMessageMedia(
            pb.GetWhatsAppMessageMediaRequest(message_id=message.id), metadata=stack.md(other)
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_failed_session_is_restarted_then_relinked_as_waha_advises(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant(members=2)
    member = make_caller(tenant, Role.MEMBER)
    name = await stack.connect(member, "5511988880010")
    await stack.control(f"sessions/{name}/drop", {"status": "FAILED", "auth": "keep"})

    async def restarted() -> bool | None:
        requests = await stack.control_get("requests")
        return True if any(r["path"].endswith(f"{name}/restart") for r in requests) else None

    await poll(restarted)  # the restart brings it back
    back = await stack.wait_status(member, pb.WAHA_SESSION_STATUS_CONNECTED)
    assert back.phone_number == "+5511988880010"

    other = make_caller(tenant, Role.MEMBER, user=tenant.members[1])
    name = await stack.connect(other, "5511988880011")
    await stack.control(f"sessions/{name}/drop", {"status": "FAILED", "auth": "broken"})
    # The restart fails again: logout and start give a new QR, and the session says why.
    final = await stack.wait_status(other, pb.WAHA_SESSION_STATUS_QR_PENDING)
    assert "scan a new QR" in final.ultimo_erro
    requests = await stack.control_get("requests")
    calls = [r["path"] for r in requests if name in r["path"]]
    assert any(p.endswith("/restart") for p in calls) and any(p.endswith("/logout") for p in calls)


async def test_member_cannot_touch_another_members_session(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant(members=2)
    first = make_caller(tenant, Role.MEMBER, user=tenant.members[0])
    second = make_caller(tenant, Role.MEMBER, user=tenant.members[1])
    await stack.start(first)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stack.stub().DisconnectWhatsApp(
            pb.DisconnectWhatsAppRequest(usuario_id=str(tenant.members[0])),
            metadata=stack.md(second),
        )
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    watch = stack.stub().WatchWhatsAppStatus(
        pb.WatchWhatsAppStatusRequest(usuario_id=str(tenant.members[0])), metadata=stack.md(second)
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await watch.read()
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stack.stub().ListWhatsAppSessions(
            pb.ListWhatsAppSessionsRequest(), metadata=stack.md(second)
        )
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # The second member sees only their own (never started) session.
    assert (await stack.status(second)).id == ""

    admin = make_caller(tenant, Role.ADMIN)
    listed = await stack.stub().ListWhatsAppSessions(
        pb.ListWhatsAppSessionsRequest(), metadata=stack.md(admin)
    )
    assert [s.usuario_id for s in listed.sessions] == [str(tenant.members[0])]
    done = await stack.stub().DisconnectWhatsApp(
        pb.DisconnectWhatsAppRequest(usuario_id=str(tenant.members[0])), metadata=stack.md(admin)
    )
    assert done.session.status == pb.WAHA_SESSION_STATUS_DISCONNECTED
    assert done.session.motivo_desconexao == pb.WAHA_DISCONNECT_REASON_ADMIN_LOGOUT


async def test_qr_rotations_without_scan_stop_the_session(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    started = await stack.start(member)
    name = started.session_name
    await wait_waha_status(stack, name, "SCAN_QR_CODE")
    for _ in range(2):  # the stack allows 2 QR codes: the first plus these rotations
        await stack.control(f"sessions/{name}/rotate-qr")
    failed = await stack.wait_status(member, pb.WAHA_SESSION_STATUS_FAILED)
    assert failed.motivo_desconexao == pb.WAHA_DISCONNECT_REASON_QR_TIMEOUT
    assert "qr_expired" in failed.ultimo_erro
    await wait_waha_status(stack, name, "STOPPED")  # the cleanup job stopped it in WAHA
    async with owner_engine.connect() as conn:
        changes = (
            await conn.execute(
                text(
                    "SELECT actor_role, details->>'para' AS para, details->>'motivo_desconexao'"
                    " AS motivo FROM audit_log WHERE organizacao_id = :t"
                    " AND action = 'whatsapp.status_changed'"
                ),
                {"t": tenant.id},
            )
        ).all()
    assert ("service", "failed", "qr_expired") in changes  # the automatic change is audited
    # "Gerar novo QR" starts a new round.
    qr = await stack.stub().GetWhatsAppQrCode(
        pb.GetWhatsAppQrCodeRequest(gerar_novo=True), metadata=stack.md(member)
    )
    assert qr.qr_code.startswith("data:image/png;base64,")
    assert (await stack.status(member)).status == pb.WAHA_SESSION_STATUS_QR_PENDING


async def test_disconnect_logs_out_deletes_and_audits(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    name = await stack.connect(member, "5511988880003")
    done = await stack.stub().DisconnectWhatsApp(
        pb.DisconnectWhatsAppRequest(request_id=str(uuid.uuid4())), metadata=stack.md(member)
    )
    assert done.session.status == pb.WAHA_SESSION_STATUS_DISCONNECTED
    assert done.session.motivo_desconexao == pb.WAHA_DISCONNECT_REASON_USER_LOGOUT
    assert done.session.HasField("desconectado_em")
    assert not [s for s in await stack.control_get("sessions") if s["name"] == name]
    await asyncio.sleep(0.5)  # late webhooks (logout restarts before delete) change nothing
    assert (await stack.status(member)).status == pb.WAHA_SESSION_STATUS_DISCONNECTED
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
        )
        actions = (
            await conn.execute(
                text("SELECT action FROM audit_log WHERE organizacao_id = :t"), {"t": tenant.id}
            )
        ).scalars()
        assert "whatsapp.session_disconnected" in set(actions)


async def test_health_check_finds_a_session_gone_from_waha(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    name = await stack.connect(member, "5511988880004")
    # Gone without a webhook (WAHA's delete is silent): only the health check can tell.
    response = await stack.http.delete(
        f"{stack.waha_url}/api/sessions/{name}", headers={"X-Api-Key": "stack-waha-api-key"}
    )
    assert response.status_code == 200
    report = await check_sessions(stack.server.deps)
    assert report.missing >= 1 and not report.waha_unreachable
    status = await stack.status(member)
    assert status.status == pb.WAHA_SESSION_STATUS_DISCONNECTED
    assert status.motivo_desconexao == pb.WAHA_DISCONNECT_REASON_SESSION_MISSING


async def test_two_users_one_request_id_two_messages_sent(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    # Request ids are per caller: two sellers who happen to pick the same one each send.
    tenant = await make_tenant(members=2)
    first = make_caller(tenant, Role.MEMBER, user=tenant.members[0])
    second = make_caller(tenant, Role.MEMBER, user=tenant.members[1])
    names = [
        await stack.connect(first, "5511988880011"),
        await stack.connect(second, "5511988880012"),
    ]
    shared = str(uuid.uuid4())
    sent = [
        await stack.stub().SendWhatsAppMessage(
            pb.SendWhatsAppMessageRequest(
                to="+5511977770011", text=f"Oi de {n}", request_id=shared
            ),
            metadata=stack.md(caller),
        )
        for n, caller in enumerate((first, second))
    ]
    assert sent[0].message.id != sent[1].message.id and sent[0].job_id != sent[1].job_id

    for n, name in enumerate(names):

        async def delivered(name: str = name) -> list[dict[str, object]] | None:
            rows = await stack.control_get("messages", session=name, source="api")
            return rows or None

        (row,) = await poll(delivered)
        assert row["message"]["body"] == f"Oi de {n}"  # type: ignore[index]

    # The same caller reusing the id for another body is refused.
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await stack.stub().SendWhatsAppMessage(
            pb.SendWhatsAppMessageRequest(to="+5511977770011", text="outra", request_id=shared),
            metadata=stack.md(first),
        )
    assert reused.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # REQUEST_ID_REUSED


async def test_waha_refusing_the_platform_key_is_the_platforms_misconfiguration(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    server = stack.server
    admin = Caller(role=Role.SUPER_ADMIN, user_id=uuid.uuid4())
    good = await server.deps.platform.current(server.deps.db, "waha")

    async def set_key(key: str) -> None:
        async with server.deps.db.unit_of_work(admin) as session:
            await server.deps.platform.update(
                session, "waha", {"api_key": key}, updated_by=admin.user_id
            )

    await set_key("not-the-platform-key")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stack.start(member)
    finally:
        await set_key(good["api_key"])
    # Not the member's TOKEN_EXPIRED: nothing of theirs to reconnect.
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    status = rpc_status.from_call(refused.value)
    reasons = set()
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reasons.add(info.reason)
    assert reasons == {"PLATFORM_CREDENTIALS_INVALID"}
    async with server.deps.db.unit_of_work(admin) as session:
        alerts = list(
            await session.scalars(select(Alert).where(Alert.kind == "waha_platform_key_rejected"))
        )
    assert alerts and all(a.audience == "super_admin" and a.organizacao_id is None for a in alerts)
    # With the key fixed, the member connects.
    await stack.connect(member, "5511988880021")


async def _message_row(owner_engine: AsyncEngine, message_id: str) -> Any:
    (row,) = await rows(owner_engine, "SELECT * FROM conversas WHERE id = :id", id=message_id)
    return row


def _send_key(message_id: str) -> str:
    """The idempotency key of a message's send job (server/whatsapp/messages.py)."""
    return f"whatsapp_send:{message_id}"


async def _sent_once(
    stack: Stack, owner_engine: AsyncEngine, member: Caller, phone: str, body: str
) -> tuple[str, str]:
    """Sends `body` to `phone` and waits until it is recorded sent; (message id, WAHA id)."""
    sent = await stack.stub().SendWhatsAppMessage(
        pb.SendWhatsAppMessageRequest(to=phone, text=body, request_id=str(uuid.uuid4())),
        metadata=stack.md(member),
    )

    async def recorded() -> Any:
        row = await _message_row(owner_engine, sent.message.id)
        return row if row.status == "sent" else None

    return sent.message.id, (await poll(recorded, within=30)).external_id


async def _lose_the_result(owner_engine: AsyncEngine, message_id: str, *, due_in_s: float) -> None:
    """What a worker killed after WAHA took the message and before its result committed
    leaves: the message still pending and its job claimable again (here after `due_in_s`)."""
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE conversas SET status = 'pending', ack = NULL, enviado_em = NULL"
                " WHERE id = :id"
            ),
            {"id": message_id},
        )
        await conn.execute(
            text(
                "UPDATE eventos_pendentes SET status = 'pending', tentativas = 1,"
                " proxima_tentativa = now() + make_interval(secs => :due)"
                " WHERE idempotency_key = :key"
            ),
            {"key": _send_key(message_id), "due": due_in_s},
        )


async def _waha_copies(stack: Stack, name: str, body: str) -> list[dict[str, Any]]:
    rows = await stack.control_get("messages", session=name, source="api")
    return [row for row in rows if row["message"]["body"] == body]


async def test_a_send_repeated_after_a_lost_worker_is_one_message(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    name = await stack.connect(member, "5511988880021")
    message_id, wa_id = await _sent_once(
        stack, owner_engine, member, "+5511977770021", "Proposta enviada"
    )

    await _lose_the_result(owner_engine, message_id, due_in_s=0)

    async def sent_again() -> list[dict[str, Any]] | None:
        copies = await _waha_copies(stack, name, "Proposta enviada")
        return copies if copies and copies[0]["repeats"] == 1 else None

    # The retried job sent the same WhatsApp id: WAHA holds one message, not two.
    (copy,) = await poll(sent_again, within=30)
    assert copy["message"]["id"] == wa_id

    async def recorded_again() -> Any:
        row = await _message_row(owner_engine, message_id)
        return row if row.status == "sent" else None

    row = await poll(recorded_again, within=30)
    assert row.external_id == wa_id and row.enviado_em is not None


async def test_an_ack_that_beats_the_send_result_is_applied_and_not_sent_again(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    name = await stack.connect(member, "5511988880022")
    message_id, wa_id = await _sent_once(
        stack, owner_engine, member, "+5511977770022", "Contrato anexo"
    )
    await _lose_the_result(owner_engine, message_id, due_in_s=3600)
    before = (await stack.status(member)).total_mensagens_enviadas

    # WhatsApp reports delivery while the send's retry waits: the row already carries its
    # WhatsApp id, so the ack lands at once instead of waiting for a result that never comes.
    await stack.control(f"sessions/{name}/ack", {"id": wa_id, "ack": 2})

    async def delivered() -> Any:
        row = await _message_row(owner_engine, message_id)
        return row if row.status == "delivered" else None

    await poll(delivered, within=30)
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE eventos_pendentes SET proxima_tentativa = now()"
                " WHERE idempotency_key = :key"
            ),
            {"key": _send_key(message_id)},
        )

    async def job_done() -> Any:
        (job,) = await rows(
            owner_engine,
            "SELECT status FROM eventos_pendentes WHERE idempotency_key = :key",
            key=_send_key(message_id),
        )
        return job if job.status == "completed" else None

    await poll(job_done, within=30)
    (copy,) = await _waha_copies(stack, name, "Contrato anexo")
    assert copy["repeats"] == 0  # the ack proved WAHA had it: nothing was sent again
    row = await _message_row(owner_engine, message_id)
    assert (row.status, row.ack, row.external_id) == ("delivered", 2, wa_id)
    assert row.enviado_em is not None
    assert (await stack.status(member)).total_mensagens_enviadas == before + 1


async def test_a_message_job_run_again_stores_and_records_nothing_twice(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    name = await stack.connect(member, "5511988880023")
    await stack.control(
        f"sessions/{name}/inbound",
        {"from": "5511977770023", "body": "Tem desconto?", "pushName": "Ana"},
    )
    stored = "SELECT * FROM conversas WHERE organizacao_id = :t AND conteudo = 'Tem desconto?'"

    async def arrived() -> Any:
        found = await rows(owner_engine, stored, t=tenant.id)
        return found or None

    (message,) = await poll(arrived, within=30)
    (job,) = await rows(
        owner_engine,
        "SELECT j.id, j.payload->>'inbox_id' AS inbox FROM eventos_pendentes j"
        " JOIN webhook_inbox w ON w.id = (j.payload->>'inbox_id')::uuid"
        # WAHA sends `message` and `message.any` for it: two jobs, one message stored.
        " WHERE j.organizacao_id = :t AND j.operacao = 'waha_event'"
        " AND j.payload->>'event' = 'message'"
        " AND position('Tem desconto?' in convert_from(w.body, 'UTF8')) > 0",
        t=tenant.id,
    )
    # Run the job again as if its worker had died before its completion was seen, with the
    # inbox row unmarked too: the message's WAHA id is already stored.
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("UPDATE webhook_inbox SET processed_at = NULL WHERE id = :id"), {"id": job.inbox}
        )
        await conn.execute(
            text(
                "UPDATE eventos_pendentes SET status = 'pending', proxima_tentativa = now()"
                " WHERE id = :id"
            ),
            {"id": job.id},
        )

    async def ran_again() -> Any:
        (inbox,) = await rows(
            owner_engine, "SELECT processed_at FROM webhook_inbox WHERE id = :id", id=job.inbox
        )
        (again,) = await rows(
            owner_engine, "SELECT status FROM eventos_pendentes WHERE id = :id", id=job.id
        )
        return True if inbox.processed_at and again.status == "completed" else None

    await poll(ran_again, within=30)
    assert [m.id for m in await rows(owner_engine, stored, t=tenant.id)] == [message.id]
    changes = await rows(
        owner_engine,
        "SELECT tipo FROM outbox_eventos WHERE organizacao_id = :t"
        " AND tipo IN ('MESSAGE_RECEIVED', 'CONTACT_CHANGED') ORDER BY sequencia",
        t=tenant.id,
    )
    assert [c.tipo for c in changes] == ["CONTACT_CHANGED", "MESSAGE_RECEIVED"]
    assert (await stack.status(member)).total_mensagens_recebidas == 1


async def test_a_known_senders_message_event_names_the_contact_it_met(
    stack: Stack, make_tenant: MakeTenant, make_caller: MakeCaller, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    name = await stack.connect(member, "5511988880024")
    for body in ("Primeira", "Segunda"):
        await stack.control(
            f"sessions/{name}/inbound", {"from": "5511977770024", "body": body, "pushName": "Bia"}
        )

    async def both() -> Any:
        found = await rows(
            owner_engine,
            "SELECT payload FROM outbox_eventos WHERE organizacao_id = :t"
            " AND tipo = 'MESSAGE_RECEIVED' ORDER BY sequencia",
            t=tenant.id,
        )
        return found if len(found) == 2 else None

    events = [row.payload for row in await poll(both, within=30)]
    (contact,) = await rows(
        owner_engine, "SELECT id FROM contatos WHERE organizacao_id = :t", t=tenant.id
    )
    # The second found the contact the first made: its event names that one.
    for event in events:
        assert event["contato_id"] == event["message"]["contato_id"] == str(contact.id)
