"""Rows -> protobuf messages, and the phone/chat-id conversions WhatsApp needs."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import phonenumbers
from google.protobuf import json_format
from renove.conexoes.v1 import resources_pb2
from renove.conexoes.v1 import whatsapp_service_pb2 as pb

from db.models import Message, WhatsAppSession
from server.errors import InvalidArgument
from server.events import Event
from server.protoconv import timestamp
from server.whatsapp import status as st
from server.whatsapp.streaming import Heartbeat, Snapshot, Update

if TYPE_CHECKING:
    from server.whatsapp.messages import Conversation
    from server.whatsapp.sessions import QrCode, Started

STATUS_PROTO: Mapping[str, pb.WahaSessionStatus.ValueType] = MappingProxyType(
    {
        st.DISCONNECTED: pb.WAHA_SESSION_STATUS_DISCONNECTED,
        st.QR_PENDING: pb.WAHA_SESSION_STATUS_QR_PENDING,
        st.CONNECTING: pb.WAHA_SESSION_STATUS_CONNECTING,
        st.CONNECTED: pb.WAHA_SESSION_STATUS_CONNECTED,
        st.FAILED: pb.WAHA_SESSION_STATUS_FAILED,
    }
)
PROTO_STATUS: Mapping[pb.WahaSessionStatus.ValueType, str] = MappingProxyType(
    {v: k for k, v in STATUS_PROTO.items()}
)
REASON_PROTO: Mapping[str, pb.WahaDisconnectReason.ValueType] = MappingProxyType(
    {
        st.USER_LOGOUT: pb.WAHA_DISCONNECT_REASON_USER_LOGOUT,
        st.ADMIN_LOGOUT: pb.WAHA_DISCONNECT_REASON_ADMIN_LOGOUT,
        st.LOGGED_OUT_FROM_PHONE: pb.WAHA_DISCONNECT_REASON_LOGGED_OUT_FROM_PHONE,
        st.SESSION_FAILED: pb.WAHA_DISCONNECT_REASON_SESSION_FAILED,
        st.QR_TIMEOUT: pb.WAHA_DISCONNECT_REASON_QR_TIMEOUT,
        st.SESSION_MISSING: pb.WAHA_DISCONNECT_REASON_SESSION_MISSING,
    }
)
# conversas.status -> MessageStatus.
MESSAGE_STATUS_PROTO: Mapping[str, resources_pb2.MessageStatus.ValueType] = MappingProxyType(
    {
        "pending": resources_pb2.MESSAGE_STATUS_QUEUED,
        "sent": resources_pb2.MESSAGE_STATUS_SENT,
        "delivered": resources_pb2.MESSAGE_STATUS_DELIVERED,
        "read": resources_pb2.MESSAGE_STATUS_READ,
        "failed": resources_pb2.MESSAGE_STATUS_FAILED,
        "received": resources_pb2.MESSAGE_STATUS_RECEIVED,
    }
)


class RowView:
    """A row read with plain SQL (an asyncpg Record), its columns read as attributes: what
    the views read of a mapped row, without building an ORM object for one answer."""

    __slots__ = ("_record",)

    def __init__(self, record: Mapping[str, Any]) -> None:
        self._record = record

    def __getattr__(self, name: str) -> Any:
        try:
            return self._record[name]
        except KeyError:
            raise AttributeError(name) from None


# A session as the views read it: the mapped row, or its columns read with plain SQL.
SessionRow = WhatsAppSession | RowView

DEFAULT_REGION = "BR"
# Chat ids that are not a person's phone: groups, broadcast lists, hidden ids, newsletters.
_NOT_A_PERSON = ("@g.us", "@broadcast", "@lid", "@newsletter")


def session_proto(row: SessionRow, owner_name: str = "") -> pb.WhatsAppSession:
    out = pb.WhatsAppSession(
        id=str(row.id),
        usuario_id=str(row.usuario_id),
        usuario_nome=owner_name,
        session_name=row.session_name,
        status=STATUS_PROTO.get(row.status, pb.WAHA_SESSION_STATUS_UNSPECIFIED),
        phone_number=row.phone_number or "",
        phone_name=row.phone_name or "",
        motivo_desconexao=REASON_PROTO.get(
            row.motivo_desconexao or "", pb.WAHA_DISCONNECT_REASON_UNSPECIFIED
        ),
        total_mensagens_enviadas=row.total_mensagens_enviadas or 0,
        total_mensagens_recebidas=row.total_mensagens_recebidas or 0,
        ultimo_erro=row.ultimo_erro or "",
        webhook_events=list(row.webhook_events or []),
    )
    for name in (
        "ultimo_qr_gerado",
        "conectado_em",
        "desconectado_em",
        "ultima_mensagem_em",
        "criado_em",
        "atualizado_em",
    ):
        value = timestamp(getattr(row, name))
        if value is not None:
            getattr(out, name).CopyFrom(value)
    return out


def session_json(proto: pb.WhatsAppSession) -> dict[str, object]:
    """The session as event data (fits NOTIFY's 8 kB: ids and small facts only)."""
    return json_format.MessageToDict(proto, preserving_proto_field_name=True)


def session_from_json(data: dict[str, object]) -> pb.WhatsAppSession:
    return json_format.ParseDict(data, pb.WhatsAppSession(), ignore_unknown_fields=True)


def message_proto(row: Message) -> pb.WhatsAppMessage:
    meta = row.metadata_ or {}
    out = pb.WhatsAppMessage(
        id=str(row.id),
        # Ours carry their WhatsApp id from the start; the contract shows it once sent.
        provider_message_id="" if row.status == "pending" else row.external_id or "",
        contato_id=str(row.contato_id) if row.contato_id else "",
        chat_id=str(meta.get("chat_id") or ""),
        direcao=(
            resources_pb2.MESSAGE_DIRECTION_INBOUND
            if row.direcao == "inbound"
            else resources_pb2.MESSAGE_DIRECTION_OUTBOUND
        ),
        sender=str(meta.get("from") or ""),
        recipient=str(meta.get("to") or ""),
        body=row.conteudo or "",
        type=str(meta.get("type") or row.tipo or "chat"),
        status=MESSAGE_STATUS_PROTO.get(row.status or "", resources_pb2.MESSAGE_STATUS_UNSPECIFIED),
        erro=str(meta.get("erro") or ""),
        usuario_id=str(row.usuario_id) if row.usuario_id else "",
    )
    media = meta.get("media")
    if isinstance(media, dict):
        out.media.CopyFrom(media_proto(media))
    for name, value in (
        ("timestamp", row.enviado_em or row.criado_em),
        ("criado_em", row.criado_em),
    ):
        ts = timestamp(value)
        if ts is not None:
            getattr(out, name).CopyFrom(ts)
    return out


def e164(raw: str, field: str) -> str:
    """A user-typed number as E.164 ("+5511999999999"); national numbers read as Brazilian."""
    try:
        number = phonenumbers.parse(raw, DEFAULT_REGION)
    except phonenumbers.NumberParseException as exc:
        raise InvalidArgument.field(field, "not a phone number") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidArgument.field(field, "not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_of_chat(chat_id: str) -> str | None:
    """E.164 of a person's chat id ("5511999999999@c.us"); None for groups, @lid and the like.

    WhatsApp ids carry the country code without `+`, so they are parsed as international.
    """
    if not chat_id or chat_id.endswith(_NOT_A_PERSON):
        return None
    digits = chat_id.split("@", 1)[0].split(":", 1)[0]
    if not digits.isdigit():
        return None
    try:
        number = phonenumbers.parse(f"+{digits}", None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def chat_of_phone(phone_e164: str) -> str:
    return f"{phone_e164.lstrip('+')}@c.us"


def chat_id_of(raw: str, field: str) -> str:
    """A recipient given as E.164/national number or as a chat id, as a person's chat id."""
    if "@" in raw:
        if raw.endswith("@s.whatsapp.net"):  # engine-internal form: never send to it
            raw = raw.split("@", 1)[0] + "@c.us"
        if phone_of_chat(raw) is None:
            raise InvalidArgument.field(field, "not a person's WhatsApp chat id")
        return raw
    return chat_of_phone(e164(raw, field))


START_MESSAGE = "Sessao criada. Solicite o QR Code para continuar."
CONNECTED_MESSAGE = "Sessao ja conectada."


def started(result: Started) -> pb.StartWhatsAppSessionResponse:
    return pb.StartWhatsAppSessionResponse(
        id=str(result.id),
        session_name=result.session_name,
        status=STATUS_PROTO[st.CONNECTED if result.connected else st.QR_PENDING],
        message=CONNECTED_MESSAGE if result.connected else START_MESSAGE,
    )


def qr_code(qr: QrCode) -> pb.GetWhatsAppQrCodeResponse:
    response = pb.GetWhatsAppQrCodeResponse(
        qr_code=f"data:{qr.mimetype};base64,{base64.b64encode(qr.png).decode()}",
        expires_in=qr.expires_in,
        status=pb.WAHA_SESSION_STATUS_QR_PENDING,
        qr_value=qr.value,
    )
    response.gerado_em.FromDatetime(qr.generated_at)
    return response


def status_of(row: SessionRow | None, owner: str, user_id: str) -> pb.WhatsAppSession:
    """A session as GetWhatsAppStatus shows it; never started reads as disconnected."""
    if row is None:
        return pb.WhatsAppSession(usuario_id=user_id, status=pb.WAHA_SESSION_STATUS_DISCONNECTED)
    return session_proto(row, owner)


def conversation(item: Conversation) -> pb.WhatsAppConversation:
    contact = item.contact
    phone = contact.telefone if contact and contact.telefone else ""
    out = pb.WhatsAppConversation(
        contato_id=str(item.contato_id),
        contato_nome=(contact.nome or "") if contact else "",
        phone_number=phone,
        chat_id=chat_of_phone(phone) if phone else "",
        nao_lidas=item.unread,
    )
    if item.last is not None:
        out.ultima_mensagem.CopyFrom(message_proto(item.last))
    ts = timestamp(item.last_at)
    if ts is not None:
        out.ultima_mensagem_em.CopyFrom(ts)
    return out


def message_event_data(message: Message, preview: int) -> dict[str, Any]:
    """A message as MESSAGE_* events carry it (the body cut to `preview` characters)."""
    proto = message_proto(message)
    if len(proto.body) > preview:
        proto.body = proto.body[:preview]
    return {
        "canal": message.canal or "",
        "contato_id": str(message.contato_id) if message.contato_id else "",
        "message": json_format.MessageToDict(proto, preserving_proto_field_name=True),
    }


def watch_response(update: Update) -> pb.WatchWhatsAppStatusResponse:
    if isinstance(update, Snapshot):
        sessions = [session_proto(row, nome) for row, nome in update.rows]
        if update.user is not None and not sessions:
            # Never started: the same "disconnected, no id" GetWhatsAppStatus answers.
            sessions = [status_of(None, "", str(update.user))]
        snapshot = pb.WhatsAppStatusSnapshot(sessions=sessions)
        snapshot.as_of.FromDatetime(update.as_of)
        return pb.WatchWhatsAppStatusResponse(snapshot=snapshot)
    if isinstance(update, Heartbeat):
        beat = resources_pb2.Heartbeat()
        beat.sent_at.FromDatetime(update.at)
        return pb.WatchWhatsAppStatusResponse(heartbeat=beat)
    event: Event = update
    # Built once per event and shared by every stream of this process (grpc only reads it).
    return event.derived(
        "whatsapp_status",
        lambda: pb.WatchWhatsAppStatusResponse(session=session_from_json(dict(event.data))),
    )


def media_proto(media: dict[str, Any]) -> pb.WhatsAppMedia:
    size = media.get("size")
    return pb.WhatsAppMedia(
        kind=str(media.get("kind") or ""),
        mimetype=str(media.get("mimetype") or ""),
        filename=str(media.get("filename") or ""),
        size=size if isinstance(size, int) else 0,
    )
