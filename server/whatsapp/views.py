"""Rows -> protobuf messages, and the phone/chat-id conversions WhatsApp needs."""

from __future__ import annotations

import phonenumbers
from google.protobuf import json_format
from renove.conexoes.v1 import resources_pb2
from renove.conexoes.v1 import whatsapp_service_pb2 as pb

from db.models import Message, WhatsAppSession
from server.errors import InvalidArgument
from server.protoconv import timestamp
from server.whatsapp import status as st

DEFAULT_REGION = "BR"
# Chat ids that are not a person's phone: groups, broadcast lists, hidden ids, newsletters.
_NOT_A_PERSON = ("@g.us", "@broadcast", "@lid", "@newsletter")


def session_proto(row: WhatsAppSession, owner_name: str = "") -> pb.WhatsAppSession:
    out = pb.WhatsAppSession(
        id=str(row.id),
        usuario_id=str(row.usuario_id),
        usuario_nome=owner_name,
        session_name=row.session_name,
        status=st.STATUS_PROTO.get(row.status, pb.WAHA_SESSION_STATUS_UNSPECIFIED),
        phone_number=row.phone_number or "",
        phone_name=row.phone_name or "",
        motivo_desconexao=st.REASON_PROTO.get(
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
        provider_message_id=row.external_id or "",
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
        status=st.MESSAGE_STATUS_PROTO.get(
            row.status or "", resources_pb2.MESSAGE_STATUS_UNSPECIFIED
        ),
        erro=str(meta.get("erro") or ""),
        usuario_id=str(row.usuario_id) if row.usuario_id else "",
    )
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
