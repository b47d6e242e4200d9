"""Instagram Direct end to end: the super admin sets the Instagram app -> a user connects with
Instagram Login (sandbox) -> a customer's DM reaches the sidecar signed -> stored, streamed on
WatchEvents, the contact and its pre-opportunity created -> replies inside 24 h, as a human at
30 h (HUMAN_AGENT), refused when automated at 30 h or at 8 days -> echoes, duplicates, read
receipts -> token refresh, revocation, expiry warnings -> disconnect and reconnect.

One stack (sandbox, sidecar, server with its worker) serves the module; each test has its
own tenant and its own sandbox account."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from renove.conexoes.v1 import connections_service_pb2 as cpb
from renove.conexoes.v1 import instagram_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import Alert, Contact, InstagramConnection, Message, Opportunity
from server.auth.caller import Caller, Role
from server.instagram.refresh import run_refresh
from server.instagram.window_alerts import alert_tenant
from tests.conftest import MakeCaller, MakeTenant, MigratedDatabase, PgServer
from tests.integration.meta_leads_support import (
    isolated_database,
    make_pipeline,
    owner_engine_for,
)
from tests.support.instagram_stack import InstagramStack, instagram_stack
from tests.support.whatsapp_stack import poll

HOUR_MS = 3600 * 1000


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
    data = str(tmp_path_factory.mktemp("instagram-server"))
    async with instagram_stack(database.owner_url, data) as running:
        await running.set_instagram_app()
        yield running


def _reason(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


async def _account(stack: InstagramStack, username: str) -> str:
    made = await stack.control("accounts", {"username": username, "name": username.title()})
    return str(made["user_id"])


async def _connect(stack: InstagramStack, caller: Caller, username: str) -> str:
    account = await _account(stack, username)
    landed = await stack.authorize(caller, account_id=account)
    assert landed["status"] == "ok", landed
    return account


async def _messages(stack: InstagramStack, caller: Caller, conversation: str) -> list[Any]:
    page = await stack.stub.ListInstagramMessages(
        pb.ListInstagramMessagesRequest(id=conversation), metadata=stack.md(caller)
    )
    return list(page.messages)


async def _send(
    stack: InstagramStack, caller: Caller, recipient: str, text: str = "", **kw: Any
) -> pb.SendInstagramMessageResponse:
    content = pb.InstagramMessageContent(text=text)
    if kw.get("image"):
        content = pb.InstagramMessageContent(
            attachment=pb.InstagramAttachment(
                type=pb.INSTAGRAM_ATTACHMENT_TYPE_IMAGE,
                payload=pb.InstagramAttachmentPayload(url=kw["image"]),
            )
        )
    response: pb.SendInstagramMessageResponse = await stack.stub.SendInstagramMessage(
        pb.SendInstagramMessageRequest(
            recipient_id=recipient,
            message=content,
            tag=kw.get("tag", pb.INSTAGRAM_MESSAGE_TAG_UNSPECIFIED),
            request_id=kw.get("request_id", ""),
        ),
        metadata=stack.md(caller),
    )
    return response


async def _status_of(
    stack: InstagramStack, caller: Caller, conversation: str, our_id: str, want: int
) -> Any:
    async def check() -> Any:
        for m in await _messages(stack, caller, conversation):
            if m.id == our_id and m.status == want:
                return m
        return None

    return await poll(check)


async def _conversation_of(
    stack: InstagramStack, caller: Caller, igsid: str
) -> pb.InstagramConversation:
    async def check() -> pb.InstagramConversation | None:
        page = await stack.stub.ListInstagramConversations(
            pb.ListInstagramConversationsRequest(), metadata=stack.md(caller)
        )
        return next((c for c in page.conversations if c.participant_id == igsid), None)

    return await poll(check)


async def test_dm_in_reply_out_and_the_window(
    stack: InstagramStack,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    owner_engine: AsyncEngine,
) -> None:
    tenant = await make_tenant(members=1)
    admin = make_caller(tenant, Role.ADMIN)
    funil, novos, _ = await make_pipeline(owner_engine, tenant.id)
    account = await _connect(stack, admin, "loja_a")
    got = await stack.stub.GetInstagramConnection(
        pb.GetInstagramConnectionRequest(), metadata=stack.md(admin)
    )
    conn = got.connection
    assert conn.status == resources_pb2.CONNECTION_STATUS_ACTIVE
    assert (conn.instagram_user_id, conn.instagram_username) == (account, "loja_a")
    assert conn.account_type == pb.INSTAGRAM_ACCOUNT_TYPE_BUSINESS
    assert conn.token_type == pb.INSTAGRAM_TOKEN_TYPE_LONG_LIVED
    assert conn.token_expires_in_days == 59 and conn.webhook_subscribed
    assert "instagram_business_manage_messages" in conn.permissions

    # The owner watches WatchEvents while the customer writes.
    watch = stack.connections.WatchEvents(
        cpb.WatchEventsRequest(
            kinds=[cpb.EVENT_KIND_MESSAGE_RECEIVED, cpb.EVENT_KIND_LEAD_RECEIVED]
        ),
        metadata=stack.md(admin),
    )
    assert (await watch.read()).WhichOneof("kind") == "snapshot"
    first = await stack.dm(account_id=account, text="Ola, quero saber o preco", name="Joana Lima")
    customer = first["sender_id"]
    seen: dict[int, Any] = {}
    async with asyncio.timeout(15):
        while len(seen) < 2:
            message = await watch.read()
            if message.WhichOneof("kind") == "event":
                seen[message.event.kind] = message.event
    watch.cancel()
    received = seen[cpb.EVENT_KIND_MESSAGE_RECEIVED]
    assert received.connection_type == resources_pb2.CONNECTION_TYPE_INSTAGRAM_DIRECT
    assert received.payload["message"]["message"]["text"] == "Ola, quero saber o preco"

    conversation = await _conversation_of(stack, admin, customer)
    assert conversation.contato_nome == "Joana Lima"
    assert conversation.window_state == pb.MESSAGING_WINDOW_STATE_OPEN
    async with stack.server.deps.db.unit_of_work(admin) as session:
        contact = await session.get(Contact, uuid.UUID(conversation.contato_id))
        assert contact is not None and contact.instagram_igsid == customer
        assert contact.instagram_window_expires_at is not None
        opps = list(
            await session.scalars(select(Opportunity).where(Opportunity.contato_id == contact.id))
        )
    assert [(o.funil_id, o.etapa_id, o.owner_id) for o in opps] == [(funil, novos, tenant.admin_id)]

    # The CRM core resuming the change feed learns the connection, the contact, the
    # pre-opportunity and the message, in order.
    core = Caller(role=Role.SERVICE, tenant_id=tenant.id)
    feed = stack.connections.WatchEvents(
        cpb.WatchEventsRequest(after_sequence=0), metadata=stack.md(core)
    )
    assert (await feed.read()).WhichOneof("kind") == "snapshot"
    recorded: list[tuple[int, Any]] = []
    async with asyncio.timeout(15):
        while len(recorded) < 4:
            message = await feed.read()
            if message.WhichOneof("kind") == "event":
                recorded.append((message.event.kind, message.event))
    feed.cancel()
    assert [kind for kind, _ in recorded] == [
        cpb.EVENT_KIND_CONNECTION_CHANGED,
        cpb.EVENT_KIND_CONTACT_CHANGED,
        cpb.EVENT_KIND_OPPORTUNITY_CREATED,
        cpb.EVENT_KIND_MESSAGE_RECEIVED,
    ]
    assert [e.sequence for _, e in recorded] == [1, 2, 3, 4]
    assert recorded[1][1].payload["origem"] == "instagram"
    assert recorded[2][1].payload["etapa_id"] == str(novos)

    # A reply inside 24 h goes out untagged; its echo is recognised, not stored again.
    sent = await _send(stack, admin, customer, "Ola Joana! Custa R$ 100.", request_id="r-1")
    assert sent.status == resources_pb2.MESSAGE_STATUS_QUEUED
    again = await _send(stack, admin, customer, "Ola Joana! Custa R$ 100.", request_id="r-1")
    assert again.id == sent.id  # the same request id does nothing twice
    out = await _status_of(
        stack, admin, conversation.id, sent.id, resources_pb2.MESSAGE_STATUS_SENT
    )
    assert out.message_id.startswith("aWdf") and out.tag == pb.INSTAGRAM_MESSAGE_TAG_UNSPECIFIED
    image = await _send(stack, admin, customer, image="https://cdn.renove.test/catalogo.jpg")
    await _status_of(stack, admin, conversation.id, image.id, resources_pb2.MESSAGE_STATUS_SENT)
    await stack.drain()
    sandbox_sent = (await stack.http.get(f"{stack.instagram_url}/_control/sent")).json()
    mine = [s for s in sandbox_sent if s["recipient"]["id"] == customer]
    assert len(mine) == 2 and "tag" not in mine[0]
    assert mine[1]["message"]["attachment"]["payload"]["url"].endswith("catalogo.jpg")

    # The customer reads our reply; a message typed in the Instagram app is mirrored.
    await stack.control(
        "read", {"account_id": account, "sender_id": customer, "mid": out.message_id}
    )
    from_app = await stack.control(
        "app-message", {"account_id": account, "recipient_id": customer, "text": "Do celular"}
    )
    await stack.drain()
    await _status_of(stack, admin, conversation.id, sent.id, resources_pb2.MESSAGE_STATUS_READ)

    async def mirrored() -> Any:
        rows = await _messages(stack, admin, conversation.id)
        return next((m for m in rows if m.message_id == from_app["mid"]), None)

    app_row = await poll(mirrored)
    assert app_row.direcao == resources_pb2.MESSAGE_DIRECTION_OUTBOUND

    # A duplicate webhook and a second DM from the same customer create nothing new.
    await stack.control(f"webhooks/{first['delivery']['id']}/resend")
    await stack.dm(account_id=account, sender_id=customer, text="Obrigada!")
    await stack.drain()

    async def settled() -> list[Any] | None:
        rows = await _messages(stack, admin, conversation.id)
        return rows if len(rows) == 5 else None

    rows = await poll(settled)
    assert sum(m.direcao == resources_pb2.MESSAGE_DIRECTION_INBOUND for m in rows) == 2
    async with stack.server.deps.db.unit_of_work(admin) as session:
        contacts = await session.scalar(
            select(func.count()).select_from(Contact).where(Contact.instagram_igsid == customer)
        )
        opportunities = await session.scalar(
            select(func.count()).select_from(Opportunity).where(Opportunity.origem == "instagram")
        )
        conn_row = await session.scalar(select(InstagramConnection))
    assert (contacts, opportunities) == (1, 1)
    assert conn_row is not None and conn_row.total_mensagens_recebidas == 2

    # 30 hours after the customer's message: a person may answer (tagged), automation may not.
    now_ms = int(time.time() * 1000)
    late = await stack.dm(account_id=account, text="Oi?", timestamp_ms=now_ms - 30 * HOUR_MS)
    late_customer = late["sender_id"]
    late_conv = await _conversation_of(stack, admin, late_customer)
    assert late_conv.window_state == pb.MESSAGING_WINDOW_STATE_HUMAN_AGENT_ONLY
    human = await _send(stack, admin, late_customer, "Desculpe a demora!")
    human_row = await _status_of(
        stack, admin, late_conv.id, human.id, resources_pb2.MESSAGE_STATUS_SENT
    )
    assert human_row.tag == pb.INSTAGRAM_MESSAGE_TAG_HUMAN_AGENT
    tagged = (await stack.http.get(f"{stack.instagram_url}/_control/sent")).json()[-1]
    assert (tagged["messaging_type"], tagged["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
    automation = Caller(role=Role.SERVICE, tenant_id=tenant.id, user_id=tenant.admin_id)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _send(stack, automation, late_customer, "Mensagem automatica")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _reason(refused.value) == "MESSAGING_WINDOW_CLOSED"

    # 8 days: nobody may answer.
    old = await stack.dm(account_id=account, text="Alo", timestamp_ms=now_ms - 8 * 24 * HOUR_MS)
    old_conv = await _conversation_of(stack, admin, old["sender_id"])
    assert old_conv.window_state == pb.MESSAGING_WINDOW_STATE_CLOSED
    with pytest.raises(grpc.aio.AioRpcError) as closed:
        await _send(stack, admin, old["sender_id"], "Ainda ai?")
    assert _reason(closed.value) == "MESSAGING_WINDOW_CLOSED"
    sent_count = len((await stack.http.get(f"{stack.instagram_url}/_control/sent")).json())
    assert sent_count == 3  # the refused sends never reached Instagram

    # Bad input changes nothing.
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await _send(stack, admin, customer, "")
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # A window about to close raises one alert for the owner.
    closing = await stack.dm(account_id=account, text="?", timestamp_ms=now_ms - 23 * HOUR_MS)
    await _conversation_of(stack, admin, closing["sender_id"])
    assert await alert_tenant(stack.server.deps, tenant.id) == 1
    assert await alert_tenant(stack.server.deps, tenant.id) == 0


async def test_webhook_signatures_are_checked(
    stack: InstagramStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant(members=0)
    admin = make_caller(tenant, Role.ADMIN)
    account = await _connect(stack, admin, "loja_sig")
    forged = await stack.dm(account_id=account, text="forjada", bad_signature=True)
    deliveries = await stack.drain()
    attempts = next(d for d in deliveries if d["id"] == forged["delivery"]["id"])["attempts"]
    assert attempts[0]["status"] == 403
    unsigned = await stack.http.post(
        f"{stack.sidecar_url}/webhooks/instagram",
        content=forged["delivery"]["body"].encode(),
        headers={"content-type": "application/json"},
    )
    assert unsigned.status_code == 401
    page = await stack.stub.ListInstagramConversations(
        pb.ListInstagramConversationsRequest(), metadata=stack.md(admin)
    )
    assert list(page.conversations) == []


async def test_members_need_the_grant_and_accounts_belong_to_one_tenant(
    stack: InstagramStack,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    owner_engine: AsyncEngine,
) -> None:
    tenant = await make_tenant(members=1)
    member = make_caller(tenant, Role.MEMBER)
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stack.stub.GetInstagramAuthUrl(
            pb.GetInstagramAuthUrlRequest(), metadata=stack.md(member)
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _reason(denied.value) == "PERMISSION_NOT_GRANTED"
    async with owner_engine.begin() as conn:
        await conn.execute(
            text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
        )
        await conn.execute(
            text(
                "UPDATE usuarios SET permissoes_conexoes = '{\"instagram_direct\": true}'"
                " WHERE id = :u"
            ),
            {"u": tenant.member_id},
        )
    account = await _connect(stack, member, "loja_membro")
    # Another user of the same tenant cannot take the account over either.
    landed = await stack.authorize(make_caller(tenant, Role.ADMIN), account_id=account)
    assert landed["motivo"] == "ACCOUNT_IN_USE"
    # The same professional account in another tenant is refused, without naming the first.
    other = await make_tenant(members=0)
    landed = await stack.authorize(make_caller(other, Role.ADMIN), account_id=account)
    assert (landed["status"], landed["motivo"]) == ("erro", "ACCOUNT_IN_USE")
    # Denied consent lands on the frontend with the reason.
    landed = await stack.authorize(make_caller(other, Role.ADMIN), deny=True)
    assert landed["motivo"] == "ACCESS_DENIED"
    # A link finished in another browser is refused; the browser that started it still can.
    await stack.control("dialog", {"account_id": await _account(stack, "loja_outra")})
    callback = await stack.login(make_caller(other, Role.ADMIN))
    async with httpx.AsyncClient(timeout=10) as stranger:
        refused = await stranger.get(callback)
    assert "motivo=STATE_BROWSER_MISMATCH" in refused.headers["location"]
    finished = await stack.http.get(callback)
    assert "status=ok" in finished.headers["location"]


async def test_token_refresh_revocation_and_expiry(
    stack: InstagramStack,
    make_tenant: MakeTenant,
    make_caller: MakeCaller,
    owner_engine: AsyncEngine,
) -> None:
    tenant = await make_tenant(members=0)
    admin = make_caller(tenant, Role.ADMIN)
    account = await _connect(stack, admin, "loja_token")
    with pytest.raises(grpc.aio.AioRpcError) as too_new:
        await stack.stub.RefreshInstagramToken(
            pb.RefreshInstagramTokenRequest(), metadata=stack.md(admin)
        )
    assert _reason(too_new.value) == "TOKEN_TOO_NEW"

    async def age(**values: Any) -> None:
        async with owner_engine.begin() as conn:
            await conn.execute(
                text("SELECT set_config('app.current_tenant', :t, true)"), {"t": str(tenant.id)}
            )
            await conn.execute(
                update(InstagramConnection)
                .where(InstagramConnection.organizacao_id == tenant.id)
                .values(**values)
            )

    # Two days on (on both sides): the scheduler refreshes a token with < 50 days left.
    await stack.control("clock", {"advance_seconds": 2 * 86400})
    now = dt.datetime.now(dt.UTC)
    await age(token_expires_at=now + dt.timedelta(days=48))
    assert await run_refresh(stack.server.deps) >= 1
    got = await stack.stub.GetInstagramConnection(
        pb.GetInstagramConnectionRequest(), metadata=stack.md(admin)
    )
    assert got.connection.token_expires_in_days == 59
    world = (await stack.http.get(f"{stack.instagram_url}/_control/world")).json()
    assert sum(1 for t in world["tokens"] if t["account_id"] == account and t["long_lived"]) == 2

    # A token whose refreshes keep failing (cooling down) and that expires within 7 days
    # warns its owner, once.
    await age(
        token_expires_at=now + dt.timedelta(days=3),
        refresh_falhas=3,
        refresh_bloqueado_ate=now + dt.timedelta(hours=1),
    )
    await run_refresh(stack.server.deps)
    await run_refresh(stack.server.deps)
    async with stack.server.deps.db.unit_of_work(admin) as session:
        warnings = list(await session.scalars(select(Alert).where(Alert.kind == "token_expiring")))
    assert len(warnings) == 1 and warnings[0].usuario_id == tenant.admin_id

    # Revoked at Instagram: the refresh marks the connection and alerts the owner.
    await age(refresh_bloqueado_ate=None)
    await stack.control("tokens/revoke", {"account_id": account})
    with pytest.raises(grpc.aio.AioRpcError) as revoked:
        await stack.stub.RefreshInstagramToken(
            pb.RefreshInstagramTokenRequest(), metadata=stack.md(admin)
        )
    assert _reason(revoked.value) == "TOKEN_REVOKED"
    got = await stack.stub.GetInstagramConnection(
        pb.GetInstagramConnectionRequest(), metadata=stack.md(admin)
    )
    assert got.connection.status == resources_pb2.CONNECTION_STATUS_REVOKED
    async with stack.server.deps.db.unit_of_work(admin) as session:
        kinds = set(await session.scalars(select(Alert.kind)))
    assert "token_refresh_failed" in kinds

    # Reconnecting keeps the row; disconnecting forgets the token and keeps the conversations.
    first_id = got.connection.id
    landed = await stack.authorize(admin, account_id=account)
    assert landed["status"] == "ok"
    got = await stack.stub.GetInstagramConnection(
        pb.GetInstagramConnectionRequest(), metadata=stack.md(admin)
    )
    assert got.connection.id == first_id
    assert got.connection.status == resources_pb2.CONNECTION_STATUS_ACTIVE
    await stack.dm(account_id=account, text="antes de desconectar")
    await stack.drain()

    async def stored() -> int | None:
        async with stack.server.deps.db.unit_of_work(admin) as session:
            n = await session.scalar(select(func.count()).select_from(Message))
        return n or None

    await poll(stored)
    gone = await stack.stub.DisconnectInstagram(
        pb.DisconnectInstagramRequest(), metadata=stack.md(admin)
    )
    assert gone.connection.status == resources_pb2.CONNECTION_STATUS_DISCONNECTED
    world = (await stack.http.get(f"{stack.instagram_url}/_control/world")).json()
    assert account not in world["subscriptions"]
    async with stack.server.deps.db.unit_of_work(admin) as session:
        row = await session.scalar(select(InstagramConnection))
        kept = await session.scalar(select(func.count()).select_from(Message))
    assert row is not None and row.access_token_encrypted == "" and kept == 1

    # Expired past its date: the scheduler marks it (after a reconnection).
    await stack.authorize(admin, account_id=account)
    await age(token_expires_at=now - dt.timedelta(hours=1))
    await run_refresh(stack.server.deps)
    got = await stack.stub.GetInstagramConnection(
        pb.GetInstagramConnectionRequest(), metadata=stack.md(admin)
    )
    assert got.connection.status == resources_pb2.CONNECTION_STATUS_EXPIRED


async def test_attachments_story_mentions_reactions_and_the_json_api(
    stack: InstagramStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant(members=0)
    admin = make_caller(tenant, Role.ADMIN)
    account = await _connect(stack, admin, "loja_midia")
    expiry = int(time.time()) + 3 * 86400
    photo = f"https://scontent.cdninstagram.test/v/foto.jpg?oe={expiry:X}"
    first = await stack.dm(
        account_id=account, attachments=[{"type": "image", "payload": {"url": photo}}]
    )
    customer = first["sender_id"]
    await stack.dm(
        account_id=account,
        sender_id=customer,
        story_mention_url="https://lookaside.test/story/123",
    )
    await stack.drain()
    conversation = await _conversation_of(stack, admin, customer)

    async def both() -> list[Any] | None:
        rows = await _messages(stack, admin, conversation.id)
        return rows if len(rows) == 2 else None

    story, image = await poll(both)
    assert image.message.attachment.type == pb.INSTAGRAM_ATTACHMENT_TYPE_IMAGE
    assert image.message.attachment.payload.url == photo
    async with stack.server.deps.db.unit_of_work(admin) as session:
        stored = await session.scalar(select(Message).where(Message.external_id == first["mid"]))
        assert stored is not None
        assert stored.metadata_["attachments"] == [
            {
                "type": "image",
                "url": photo,
                "expira_em": dt.datetime.fromtimestamp(expiry, dt.UTC).isoformat(),
            }
        ]
        mention = await session.scalar(
            select(Message).where(Message.external_id == story.message_id)
        )
        assert mention is not None and mention.tipo == "story_mention"

    # The spec's JSON body through the gateway.
    token = stack.server.token(admin)
    answer = await stack.http.post(
        f"{stack.sidecar_url}/api/v1/conexoes/instagram/mensagens",
        json={"recipient_id": customer, "message": {"text": "Vi sua mencao, obrigado!"}},
        headers={"authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    reply = await _status_of(
        stack, admin, conversation.id, body["id"], resources_pb2.MESSAGE_STATUS_SENT
    )
    bad = await stack.http.post(
        f"{stack.sidecar_url}/api/v1/conexoes/instagram/mensagens",
        json={"recipient_id": customer, "message": {}},
        headers={"authorization": f"Bearer {token}"},
    )
    assert bad.status_code == 400

    # The customer reacts to our reply.
    await stack.control(
        "reaction", {"account_id": account, "sender_id": customer, "mid": reply.message_id}
    )
    await stack.drain()

    async def reacted() -> dict[str, Any] | None:
        async with stack.server.deps.db.unit_of_work(admin) as session:
            row = await session.scalar(select(Message).where(Message.id == uuid.UUID(reply.id)))
        return (row.metadata_ or {}).get("reacao") if row else None

    assert (await poll(reacted))["reaction"] == "love"


async def test_instagrams_own_window_refusal_fails_the_message_with_the_same_reason(
    stack: InstagramStack, make_tenant: MakeTenant, make_caller: MakeCaller
) -> None:
    tenant = await make_tenant(members=0)
    admin = make_caller(tenant, Role.ADMIN)
    account = await _connect(stack, admin, "loja_relogio")
    dm = await stack.dm(account_id=account, text="Oi", timestamp_ms=int(time.time() * 1000))
    conversation = await _conversation_of(stack, admin, dm["sender_id"])
    # Instagram's clock says two days have passed; ours says the window is open.
    await stack.control("clock", {"advance_seconds": 2 * 86400})
    sent = await _send(stack, admin, dm["sender_id"], "Oi! Tudo bem?")
    failed = await _status_of(
        stack, admin, conversation.id, sent.id, resources_pb2.MESSAGE_STATUS_FAILED
    )
    assert "window" in failed.erro
    async with stack.server.deps.db.unit_of_work(admin) as session:
        row = await session.get(Message, uuid.UUID(sent.id))
    assert row is not None and row.metadata_["motivo"] == "MESSAGING_WINDOW_CLOSED"
