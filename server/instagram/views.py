"""Rows -> protobuf messages (and the small event data that fits a NOTIFY)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.protobuf import json_format
from renove.conexoes.v1 import instagram_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2

from db.models import Contact, InstagramConnection, Message
from server.instagram.connection import days_left
from server.instagram.window import WindowState, expiries, state_at
from server.protoconv import timestamp

CANAL = "instagram"
# NOTIFY payloads are capped at 8 kB: events carry a preview, the full text is in the row.
_PREVIEW = 1000

_STATUS = {
    "active": resources_pb2.CONNECTION_STATUS_ACTIVE,
    "expired": resources_pb2.CONNECTION_STATUS_EXPIRED,
    "revoked": resources_pb2.CONNECTION_STATUS_REVOKED,
    "error": resources_pb2.CONNECTION_STATUS_ERROR,
}
_ACCOUNT = {
    "BUSINESS": pb.INSTAGRAM_ACCOUNT_TYPE_BUSINESS,
    "CREATOR": pb.INSTAGRAM_ACCOUNT_TYPE_CREATOR,
}
_TOKEN = {
    "short_lived": pb.INSTAGRAM_TOKEN_TYPE_SHORT_LIVED,
    "long_lived": pb.INSTAGRAM_TOKEN_TYPE_LONG_LIVED,
}
_MESSAGE_STATUS = {
    "pending": resources_pb2.MESSAGE_STATUS_QUEUED,
    "sent": resources_pb2.MESSAGE_STATUS_SENT,
    "delivered": resources_pb2.MESSAGE_STATUS_DELIVERED,
    "read": resources_pb2.MESSAGE_STATUS_READ,
    "failed": resources_pb2.MESSAGE_STATUS_FAILED,
    "received": resources_pb2.MESSAGE_STATUS_RECEIVED,
}
_ATTACHMENT = {
    "image": pb.INSTAGRAM_ATTACHMENT_TYPE_IMAGE,
    "video": pb.INSTAGRAM_ATTACHMENT_TYPE_VIDEO,
    "audio": pb.INSTAGRAM_ATTACHMENT_TYPE_AUDIO,
    "file": pb.INSTAGRAM_ATTACHMENT_TYPE_FILE,
}
WINDOW = {
    WindowState.OPEN: pb.MESSAGING_WINDOW_STATE_OPEN,
    WindowState.CLOSING_SOON: pb.MESSAGING_WINDOW_STATE_CLOSING_SOON,
    WindowState.HUMAN_AGENT_ONLY: pb.MESSAGING_WINDOW_STATE_HUMAN_AGENT_ONLY,
    WindowState.CLOSED: pb.MESSAGING_WINDOW_STATE_CLOSED,
}
ATTACHMENT_KIND = {v: k for k, v in _ATTACHMENT.items()}


def _stamp(target: Any, field: str, value: dt.datetime | None) -> None:
    ts = timestamp(value)
    if ts is not None:
        getattr(target, field).CopyFrom(ts)


def connection_proto(row: InstagramConnection | None, now: dt.datetime) -> pb.InstagramConnection:
    if row is None or row.deletado_em is not None:
        out = pb.InstagramConnection(status=resources_pb2.CONNECTION_STATUS_DISCONNECTED)
        if row is not None:  # disconnected: the account it was, its history
            out.id, out.usuario_id = str(row.id), str(row.usuario_id)
            out.instagram_username = row.instagram_username or ""
            out.total_mensagens_recebidas = row.total_mensagens_recebidas or 0
            out.total_mensagens_enviadas = row.total_mensagens_enviadas or 0
        return out
    out = pb.InstagramConnection(
        id=str(row.id),
        usuario_id=str(row.usuario_id),
        status=_STATUS.get(row.status, resources_pb2.CONNECTION_STATUS_ERROR),
        instagram_user_id=row.instagram_user_id,
        instagram_username=row.instagram_username or "",
        instagram_name=row.instagram_name or "",
        profile_picture_url=row.profile_picture_url or "",
        account_type=_ACCOUNT.get(row.account_type or "", pb.INSTAGRAM_ACCOUNT_TYPE_UNSPECIFIED),
        token_type=_TOKEN.get(row.token_type or "", pb.INSTAGRAM_TOKEN_TYPE_UNSPECIFIED),
        token_expires_in_days=days_left(row.token_expires_at, now),
        permissions=list(row.permissions or []),
        webhook_subscribed=bool(row.webhook_subscribed),
        total_mensagens_recebidas=row.total_mensagens_recebidas or 0,
        total_mensagens_enviadas=row.total_mensagens_enviadas or 0,
        profile_url=f"https://www.instagram.com/{row.instagram_username}"
        if row.instagram_username
        else "",
        ultimo_erro=row.ultimo_erro or "",
        funil_id=str((row.configuracoes or {}).get("funil_id") or ""),
        etapa_id=str((row.configuracoes or {}).get("etapa_id") or ""),
    )
    for name in (
        "token_expires_at",
        "ultima_mensagem_em",
        "ultimo_sync",
        "conectado_em",
        "criado_em",
        "atualizado_em",
    ):
        _stamp(out, name, getattr(row, name))
    return out


def message_proto(row: Message) -> pb.InstagramMessage:
    meta = row.metadata_ or {}
    content = pb.InstagramMessageContent(text=row.conteudo or "")
    attachments = meta.get("attachments") or []
    if attachments:
        first = attachments[0]
        content.attachment.type = _ATTACHMENT.get(
            str(first.get("type")), pb.INSTAGRAM_ATTACHMENT_TYPE_UNSPECIFIED
        )
        content.attachment.payload.url = str(first.get("url") or "")
    out = pb.InstagramMessage(
        id=str(row.id),
        message_id=row.external_id or "",
        conversa_id=str(row.contato_id) if row.contato_id else "",
        direcao=resources_pb2.MESSAGE_DIRECTION_INBOUND
        if row.direcao == "inbound"
        else resources_pb2.MESSAGE_DIRECTION_OUTBOUND,
        sender_id=str(meta.get("sender_id") or ""),
        recipient_id=str(meta.get("recipient_id") or ""),
        message=content,
        status=_MESSAGE_STATUS.get(row.status or "", resources_pb2.MESSAGE_STATUS_UNSPECIFIED),
        tag=pb.INSTAGRAM_MESSAGE_TAG_HUMAN_AGENT
        if meta.get("tag") == "HUMAN_AGENT"
        else pb.INSTAGRAM_MESSAGE_TAG_UNSPECIFIED,
        erro=str(meta.get("erro") or ""),
    )
    _stamp(out, "timestamp", row.enviado_em)
    _stamp(out, "criado_em", row.criado_em)
    return out


def message_event_data(row: Message) -> dict[str, Any]:
    proto = message_proto(row)
    if len(proto.message.text) > _PREVIEW:
        proto.message.text = proto.message.text[:_PREVIEW]
    return {
        "canal": CANAL,
        "connection_type": "instagram_direct",
        "contato_id": str(row.contato_id) if row.contato_id else "",
        "message": json_format.MessageToDict(proto, preserving_proto_field_name=True),
    }


def conversation_proto(
    contact: Contact,
    last: Message | None,
    last_inbound: dt.datetime | None,
    unread: int,
    now: dt.datetime,
) -> pb.InstagramConversation:
    out = pb.InstagramConversation(
        id=str(contact.id),
        contato_id=str(contact.id),
        contato_nome=contact.nome or "",
        participant_id=contact.instagram_igsid or "",
        participant_username=contact.instagram_username or "",
        nao_lidas=unread,
        window_state=WINDOW[state_at(last_inbound, now)],
    )
    if last is not None:
        out.ultima_mensagem.CopyFrom(message_proto(last))
        _stamp(out, "ultima_mensagem_em", last.enviado_em or last.criado_em)
    free, human = expiries(last_inbound)
    _stamp(out, "instagram_window_expires_at", free)
    _stamp(out, "human_agent_window_expires_at", human)
    return out
