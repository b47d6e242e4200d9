"""WAHA message events into `conversas`: inbound messages, phone-sent mirrors, delivery acks.

docs/providers.md, WAHA: `message` carries incoming messages only; `message.any` every message,
ours included (`source` "api" for those we sent, already stored; "app" for the phone's).
Both fire for an incoming message, so rows are deduplicated on the WAHA message id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Message, WhatsAppSession
from server.errors import Unavailable
from server.outbox import record_change
from server.whatsapp import status as st
from server.whatsapp import views
from server.whatsapp.connection import CANAL
from server.whatsapp.contacts import contact_for_phone
from server.whatsapp.hidden_senders import contact_for_sender, hidden_id, revealed_phone
from server.whatsapp.media import media_of
from server.whatsapp.views import phone_of_chat

# NOTIFY payloads are capped at 8 kB: events carry a preview, the full text is in the row.
_PREVIEW = 1000


class AckBeforeSend(Unavailable):
    """An ack for one of our messages arrived before its send result was stored: retry."""

    reason = "ACK_BEFORE_SEND"


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def message_event_data(message: Message) -> dict[str, Any]:
    return views.message_event_data(message, _PREVIEW)


@dataclass(frozen=True)
class Incoming:
    """What a person's WAMessage stores, read from the payload (docs/providers.md, WAHA)."""

    from_me: bool
    external_id: str
    peer: str  # the chat: the other party
    phone: str | None  # E.164, when the chat names a phone number
    lid: str | None  # the hidden id, when WhatsApp shows the sender only by one
    name: str | None  # the sender's push name (not ours)
    sent_at: dt.datetime
    ack: int | None
    body: str
    tipo: str
    metadata: dict[str, Any]

    @property
    def direcao(self) -> str:
        return "outbound" if self.from_me else "inbound"

    @property
    def kind(self) -> str:
        """The change the new row is on the feed as."""
        return "MESSAGE_STATUS" if self.from_me else "MESSAGE_RECEIVED"

    def columns(self) -> dict[str, Any]:
        """The message row's own columns (ids, contact and times are the caller's)."""
        return {
            "canal": CANAL,
            "direcao": self.direcao,
            "external_id": self.external_id,
            "conteudo": self.body,
            "tipo": self.tipo,
            "status": "sent" if self.from_me else "received",
            "ack": self.ack,
            "enviado_em": self.sent_at,
            "metadata_": self.metadata,
        }

    def row(self, **ids: Any) -> Message:
        """The message row, not stored (ids, contact and times given by the caller)."""
        return Message(**self.columns(), **ids)


def incoming(payload: Mapping[str, Any], *, via_any: bool) -> Incoming | None:
    """The message to store, or None: sent through our API (the send job stored it), or not
    a person's (groups and broadcasts are not CRM contacts)."""
    from_me = payload.get("fromMe") is True
    if from_me and (not via_any or payload.get("source") == "api"):
        return None
    external_id = _text(payload.get("id"))
    peer = _text(payload.get("to") if from_me else payload.get("from"))
    phone = phone_of_chat(peer)
    lid = hidden_id(peer)
    if not external_id or (phone is None and lid is None):
        return None
    data = payload.get("_data")
    notify_name = data.get("notifyName") if isinstance(data, Mapping) else None
    seconds = payload.get("timestamp")
    ack = payload.get("ack")
    media = media_of(payload)
    return Incoming(
        from_me=from_me,
        external_id=external_id,
        peer=peer,
        phone=phone,
        lid=lid,
        name=notify_name if isinstance(notify_name, str) and not from_me else None,
        # The message timestamp is in seconds (the envelope's is in ms).
        sent_at=(
            dt.datetime.fromtimestamp(seconds, dt.UTC)
            if isinstance(seconds, int | float)
            else dt.datetime.now(dt.UTC)
        ),
        ack=ack if isinstance(ack, int) and not isinstance(ack, bool) else None,
        body=_text(payload.get("body")),
        tipo="text" if media is None else media["kind"],
        metadata={
            "chat_id": peer,
            "from": _text(payload.get("from")),
            "to": _text(payload.get("to")),
            "type": "chat" if not payload.get("hasMedia") else "media",
            "source": _text(payload.get("source")) or ("app" if from_me else ""),
            "reply_to": payload.get("replyTo"),
            **({"media": media} if media is not None else {}),
        },
    )


async def store_message(
    tx: AsyncSession, row: WhatsAppSession, payload: Mapping[str, Any], *, via_any: bool
) -> Message | None:
    """Stores one WAMessage; returns the new row, or None (duplicate, ours, not a person)."""
    msg = incoming(payload, via_any=via_any)
    if msg is None:
        return None
    if msg.lid is not None:
        # A sender WhatsApp shows only by a hidden id: kept on a contact of that id.
        contato_id = await contact_for_sender(
            tx,
            row.organizacao_id,
            msg.lid,
            revealed_phone(payload),
            name=msg.name,
            owner=row.usuario_id,
        )
    else:
        assert msg.phone is not None
        contato_id = await contact_for_phone(
            tx, row.organizacao_id, msg.phone, name=msg.name, owner=row.usuario_id
        )
    from_me, sent_at = msg.from_me, msg.sent_at
    # The new row itself comes back (RETURNING the entity): no second read of what was written.
    message = await tx.scalar(
        insert(Message)
        .values(
            organizacao_id=row.organizacao_id,
            contato_id=contato_id,
            usuario_id=row.usuario_id,
            **msg.columns(),
        )
        .on_conflict_do_nothing(
            index_elements=["organizacao_id", "canal", "external_id"],
            index_where=Message.external_id.is_not(None),
        )
        .returning(Message)
    )
    if message is None:
        return None
    if from_me:
        row.total_mensagens_enviadas = (row.total_mensagens_enviadas or 0) + 1
    else:
        row.total_mensagens_recebidas = (row.total_mensagens_recebidas or 0) + 1
    if row.ultima_mensagem_em is None or sent_at > row.ultima_mensagem_em:
        row.ultima_mensagem_em = sent_at
    await record_change(
        tx, row.organizacao_id, msg.kind, message_event_data(message), user_id=row.usuario_id
    )
    return message


async def apply_ack(tx: AsyncSession, row: WhatsAppSession, payload: Mapping[str, Any]) -> bool:
    """Moves a message's delivery state forward only (acks repeat and arrive out of order)."""
    external_id = _text(payload.get("id"))
    level = payload.get("ack")
    if not external_id or not isinstance(level, int) or isinstance(level, bool):
        return False
    message = await tx.scalar(
        select(Message)
        .where(Message.canal == CANAL, Message.external_id == external_id)
        .with_for_update()
    )
    if message is None:
        if payload.get("fromMe") is True and await _has_pending_send(tx, row):
            raise AckBeforeSend("ack for a message whose send is not recorded yet")
        return False
    if message.ack is not None and level <= message.ack:
        return False
    message.ack = level
    if message.direcao == "outbound":
        message.status = st.ACK_STATUS.get(level, message.status or "sent")
        await record_change(
            tx,
            row.organizacao_id,
            "MESSAGE_STATUS",
            {"canal": CANAL, "id": str(message.id), "status": message.status, "ack": level},
            user_id=row.usuario_id,
        )
    return True


async def _has_pending_send(tx: AsyncSession, row: WhatsAppSession) -> bool:
    pending = await tx.scalar(
        select(Message.id)
        .where(
            Message.canal == CANAL,
            Message.usuario_id == row.usuario_id,
            Message.direcao == "outbound",
            Message.status == "pending",
        )
        .limit(1)
    )
    return pending is not None
