"""Instagram webhook events into `conversas` (the `instagram_event` job; providers contract §6.2).

Each job is one messaging item of a verified delivery (the ingress stored it, deduplicated by
`mid`). The account is ours by `entry[].id` (the professional account's `user_id`); the
customer is the sender of a message and the recipient of an echo.

    message            stored inbound (dedupe by mid); the contact found or created by IGSID
                       (profile fetched once); a first DM from a stranger opens the
                       pre-opportunity; the window restarts from the message's own time
    message, is_echo   ours from the API: already stored (or still being sent: adopted);
                       typed in the Instagram app: stored outbound
    read               outbound messages up to the watermark become read
    reaction           kept on the message it reacts to
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Contact, InstagramConnection, Message, Opportunity, WebhookInbox
from server.bootstrap import Deps
from server.events import Event, publish
from server.ingress.routes import instagram_events
from server.instagram import contacts
from server.instagram.connection import CONNECTION_TYPE, access_token, client, tenant_service
from server.instagram.views import CANAL, message_event_data
from server.outbox import record_change
from server.outbox.payloads import contact_changed, opportunity_created
from server.providers.errors import ProviderError
from server.providers.instagram import Profile
from server.resilience.jobs import Job

_log = logging.getLogger(__name__)


def find_item(body: bytes, event_id: str) -> tuple[str, dict[str, Any]] | None:
    """The messaging item of a delivery whose ingress event id is `event_id` (or that id
    tagged `@<tenant>` by the intake when an account had several holders)."""
    event_id = _untagged(event_id)
    try:
        root = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    for entry in root.get("entry") or [] if isinstance(root, dict) else []:
        if not isinstance(entry, dict):
            continue
        for item in entry.get("messaging") or []:
            if not isinstance(item, dict):
                continue
            one = {"object": "instagram", "entry": [{"id": entry.get("id"), "messaging": [item]}]}
            events = instagram_events(one, b"")
            if events and events[0].event_id == event_id:
                return str(entry.get("id") or ""), item
    return None


def _untagged(event_id: str) -> str:
    head, tag, tenant = event_id.rpartition("@")
    if not tag:
        return event_id
    try:
        uuid.UUID(tenant)
    except ValueError:
        return event_id
    return head


def _peer(item: Mapping[str, Any], key: str) -> str:
    inner = item.get(key)
    return str(inner.get("id") or "") if isinstance(inner, dict) else ""


def _when(item: Mapping[str, Any], fallback: dt.datetime) -> dt.datetime:
    # Instagram's `timestamp` is in milliseconds.
    value = item.get("timestamp")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    return fallback


def _expiry(url: str) -> str | None:
    """Instagram CDN URLs carry their expiry as `oe=<hex unix seconds>`."""
    values = parse_qs(urlsplit(url).query).get("oe")
    try:
        return dt.datetime.fromtimestamp(int(values[0], 16), dt.UTC).isoformat() if values else None
    except ValueError:
        return None


def attachments_of(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    kept = []
    for a in message.get("attachments") or []:
        if isinstance(a, dict):
            payload = a.get("payload")
            url = str(payload.get("url") or "") if isinstance(payload, dict) else ""
            kept.append({"type": str(a.get("type") or ""), "url": url, "expira_em": _expiry(url)})
    return kept


async def handle(deps: Deps, job: Job) -> None:
    tenant = job.tenant_id
    inbox_id = uuid.UUID(str(job.payload["inbox_id"]))
    conn_id = uuid.UUID(str(job.payload["conexao_id"]))
    async with deps.db.unit_of_work(tenant_service(tenant)) as tx:
        inbox = await tx.get(WebhookInbox, inbox_id)
        if inbox is None or inbox.processed_at is not None:
            return
        found = find_item(bytes(inbox.body), str(job.payload.get("event_id") or ""))
        conn = await tx.get(InstagramConnection, conn_id)
        if found is None or conn is None or conn.deletado_em is not None:
            await _done(tx, inbox_id, deps.clock.now())
            return
        _, item = found
        message = item.get("message") if isinstance(item.get("message"), dict) else None
        echo = bool(message and message.get("is_echo") is True)
        customer = _peer(item, "recipient" if echo else "sender")
        known = await contacts.contact_id_by_igsid(tx, customer)
        token = access_token(deps, conn) if conn.status == "active" else ""
    profile = None
    if message is not None and known is None and token and customer:
        profile = await _profile(deps, token, customer)
    async with deps.db.unit_of_work(tenant_service(tenant)) as tx:
        inbox = await tx.get(WebhookInbox, inbox_id, with_for_update=True)
        if inbox is None or inbox.processed_at is not None:
            return  # another run did it meanwhile
        conn = await tx.get(InstagramConnection, conn_id, with_for_update=True)
        assert conn is not None
        if message is not None:
            await _message(deps, tx, conn, item, message, customer, profile, echo)
        elif isinstance(item.get("read"), dict):
            await _read(tx, conn, customer, str(item["read"].get("mid") or ""))
        elif isinstance(item.get("reaction"), dict):
            await _reaction(tx, conn, item["reaction"])
        else:
            _log.info("ignoring an Instagram messaging item without message/read/reaction")
        await _done(tx, inbox_id, deps.clock.now())


async def _done(tx: AsyncSession, inbox_id: uuid.UUID, at: dt.datetime) -> None:
    await tx.execute(
        update(WebhookInbox).where(WebhookInbox.id == inbox_id).values(processed_at=at)
    )


async def _profile(deps: Deps, token: str, igsid: str) -> Profile | None:
    try:
        return await client(deps).profile(token, igsid)
    except ProviderError as exc:  # the contact is still created, named by its IGSID
        _log.info("Instagram profile of a sender unavailable: %r", exc)
        return None


async def _message(
    deps: Deps,
    tx: AsyncSession,
    conn: InstagramConnection,
    item: Mapping[str, Any],
    message: Mapping[str, Any],
    customer: str,
    profile: Profile | None,
    echo: bool,
) -> None:
    mid = str(message.get("mid") or "")
    if not mid or not customer:
        return
    if message.get("is_deleted") is True:
        await _deleted(tx, mid)
        return
    existing = await tx.scalar(
        select(Message).where(Message.canal == CANAL, Message.external_id == mid)
    )
    if existing is not None:
        return  # a redelivery, or the echo of a send already recorded
    at = _when(item, deps.clock.now())
    text = str(message.get("text") or "")
    attachments = attachments_of(message)
    if echo and await _adopt(tx, conn, customer, mid, text, attachments, at):
        return
    found = await contacts.upsert_contact(tx, conn, customer, profile, pre_opportunity=not echo)
    inserted = await tx.scalar(
        insert(Message)
        .values(
            organizacao_id=conn.organizacao_id,
            canal=CANAL,
            contato_id=found.id,
            usuario_id=conn.usuario_id,
            direcao="outbound" if echo else "inbound",
            external_id=mid,
            conteudo=text,
            tipo=attachments[0]["type"] if attachments and not text else "text",
            status="sent" if echo else "received",
            enviado_em=at,
            metadata_={
                "sender_id": _peer(item, "sender"),
                "recipient_id": _peer(item, "recipient"),
                "attachments": attachments,
                "reply_to": message.get("reply_to"),
                "source": "app" if echo else "",
                "conexao_id": str(conn.id),
            },
        )
        .on_conflict_do_nothing(
            index_elements=["organizacao_id", "canal", "external_id"],
            index_where=Message.external_id.is_not(None),
        )
        .returning(Message.id)
    )
    if inserted is None:
        return
    row = await tx.get(Message, inserted)
    assert row is not None
    if echo:
        conn.total_mensagens_enviadas = (conn.total_mensagens_enviadas or 0) + 1
    else:
        conn.total_mensagens_recebidas = (conn.total_mensagens_recebidas or 0) + 1
    if conn.ultima_mensagem_em is None or at > conn.ultima_mensagem_em:
        conn.ultima_mensagem_em = at
    tenant, owner = conn.organizacao_id, conn.usuario_id
    if found.created:
        contact = await tx.get(Contact, found.id)
        await record_change(
            tx,
            tenant,
            "CONTACT_CHANGED",
            contact_changed(contact, created=True, origem=contacts.ORIGIN),
            user_id=owner,
        )
    if found.opportunity_id is not None:
        opportunity = await tx.get(Opportunity, found.opportunity_id)
        assert opportunity is not None
        await record_change(
            tx, tenant, "OPPORTUNITY_CREATED", opportunity_created(opportunity), user_id=owner
        )
        # The owner hears of the new pre-opportunity live, as of a new lead.
        await publish(
            tx,
            Event(
                "LEAD_RECEIVED",
                tenant,
                owner,
                {
                    "contato_id": str(found.id),
                    "oportunidade_id": str(found.opportunity_id),
                    "connection_type": CONNECTION_TYPE,
                    "origem": contacts.ORIGIN,
                },
            ),
        )
    kind = "MESSAGE_STATUS" if echo else "MESSAGE_RECEIVED"
    await record_change(tx, tenant, kind, message_event_data(row), user_id=owner)


async def _adopt(
    tx: AsyncSession,
    conn: InstagramConnection,
    customer: str,
    mid: str,
    text: str,
    attachments: list[dict[str, Any]],
    at: dt.datetime,
) -> bool:
    """The echo of one of our API sends whose answer is not recorded yet: it went out."""
    url = attachments[0]["url"] if attachments else ""
    pending = await tx.scalar(
        select(Message)
        .where(
            Message.canal == CANAL,
            Message.usuario_id == conn.usuario_id,
            Message.direcao == "outbound",
            Message.status == "pending",
            Message.metadata_["recipient_id"].astext == customer,
            Message.conteudo == text if text else Message.metadata_["image_url"].astext == url,
        )
        .order_by(Message.criado_em)
        .limit(1)
        .with_for_update()
    )
    if pending is None:
        return False
    pending.external_id = mid
    pending.status = "sent"
    pending.enviado_em = at
    # The send's own answer finds the row sent and leaves the counter alone: counted here, once.
    await tx.execute(
        update(InstagramConnection)
        .where(InstagramConnection.id == conn.id)
        .values(
            total_mensagens_enviadas=func.coalesce(InstagramConnection.total_mensagens_enviadas, 0)
            + 1
        )
        .execution_options(synchronize_session=False)
    )
    await record_change(
        tx,
        conn.organizacao_id,
        "MESSAGE_STATUS",
        {
            "canal": CANAL,
            "connection_type": CONNECTION_TYPE,
            "id": str(pending.id),
            "status": "sent",
            "message_id": mid,
        },
        user_id=conn.usuario_id,
    )
    return True


async def _deleted(tx: AsyncSession, mid: str) -> None:
    await tx.execute(
        update(Message)
        .where(Message.canal == CANAL, Message.external_id == mid)
        .values(metadata_=Message.metadata_.op("||")(func.jsonb_build_object("apagada", True)))
    )


async def _read(tx: AsyncSession, conn: InstagramConnection, customer: str, mid: str) -> None:
    """`read.mid` is a watermark: our messages to the customer up to it were seen."""
    contact = await contacts.contact_id_by_igsid(tx, customer)
    mark = await tx.scalar(select(Message.enviado_em).where(Message.external_id == mid))
    if contact is None or mark is None:
        return
    read = await tx.scalars(
        update(Message)
        .where(
            Message.canal == CANAL,
            Message.contato_id == contact,
            Message.usuario_id == conn.usuario_id,
            Message.direcao == "outbound",
            Message.status.in_(("sent", "delivered")),
            Message.enviado_em <= mark,
        )
        .values(status="read")
        .returning(Message.id)
    )
    for message_id in read:
        await record_change(
            tx,
            conn.organizacao_id,
            "MESSAGE_STATUS",
            {
                "canal": CANAL,
                "connection_type": CONNECTION_TYPE,
                "id": str(message_id),
                "status": "read",
            },
            user_id=conn.usuario_id,
        )


async def _reaction(tx: AsyncSession, conn: InstagramConnection, value: Mapping[str, Any]) -> None:
    mid = str(value.get("mid") or "")
    message = await tx.scalar(
        select(Message).where(Message.canal == CANAL, Message.external_id == mid).with_for_update()
    )
    if message is None:
        return
    meta = dict(message.metadata_ or {})
    if value.get("action") == "unreact":
        meta.pop("reacao", None)
    else:
        meta["reacao"] = {"reaction": value.get("reaction"), "emoji": value.get("emoji")}
    message.metadata_ = meta
    await record_change(
        tx,
        conn.organizacao_id,
        "MESSAGE_STATUS",
        {
            "canal": CANAL,
            "connection_type": CONNECTION_TYPE,
            "id": str(message.id),
            "reacao": meta.get("reacao"),
        },
        user_id=conn.usuario_id,
    )
