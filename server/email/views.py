"""Pure functions from rows to protos."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from renove.conexoes.v1 import email_service_pb2 as pb
from renove.conexoes.v1 import resources_pb2

from db.models import EmailConnection, SentEmail
from server.protoconv import timestamp

_STATUS = {
    "active": resources_pb2.CONNECTION_STATUS_ACTIVE,
    "expired": resources_pb2.CONNECTION_STATUS_EXPIRED,
    "revoked": resources_pb2.CONNECTION_STATUS_REVOKED,
    "error": resources_pb2.CONNECTION_STATUS_ERROR,
    "testing": resources_pb2.CONNECTION_STATUS_TESTING,
}
_KIND = {
    "gmail_oauth": pb.EMAIL_CONNECTION_KIND_GMAIL_OAUTH,
    "smtp_manual": pb.EMAIL_CONNECTION_KIND_SMTP_MANUAL,
}
_SENT = {
    "pending": resources_pb2.MESSAGE_STATUS_QUEUED,
    "sent": resources_pb2.MESSAGE_STATUS_SENT,
    "failed": resources_pb2.MESSAGE_STATUS_FAILED,
}


def connection_status(status: str) -> resources_pb2.ConnectionStatus.ValueType:
    return _STATUS.get(status, resources_pb2.CONNECTION_STATUS_ERROR)


def kind(tipo: str) -> pb.EmailConnectionKind.ValueType:
    return _KIND.get(tipo, pb.EMAIL_CONNECTION_KIND_UNSPECIFIED)


def sent_status(status: str) -> resources_pb2.MessageStatus.ValueType:
    return _SENT.get(status, resources_pb2.MESSAGE_STATUS_UNSPECIFIED)


def disconnected() -> pb.EmailConnection:
    return pb.EmailConnection(status=resources_pb2.CONNECTION_STATUS_DISCONNECTED)


def connection_proto(row: EmailConnection | None) -> pb.EmailConnection:
    if row is None or row.deletado_em is not None:
        return disconnected()
    smtp = row.tipo == "smtp_manual"
    out = pb.EmailConnection(
        id=str(row.id),
        usuario_id=str(row.usuario_id),
        tipo=kind(row.tipo),
        email=row.email,
        nome_remetente=row.nome_remetente or "",
        status=connection_status(row.status),
        google_user_id=row.google_user_id or "",
        smtp_host=(row.smtp_host or "") if smtp else "",
        smtp_port=(row.smtp_port or 0) if smtp else 0,
        smtp_user=(row.smtp_user or "") if smtp else "",
        smtp_tls=bool(row.smtp_tls) if smtp else False,
        smtp_auto_detected=bool(row.smtp_auto_detected) if smtp else False,
        smtp_password_set=bool(row.smtp_pass_encrypted),
        total_emails_enviados=row.total_emails_enviados or 0,
        ultimo_erro=row.ultimo_erro or "",
    )
    for name, value in (
        ("token_expires_at", row.token_expires_at),
        ("ultimo_envio", row.ultimo_envio),
        ("conectado_em", row.conectado_em),
        ("criado_em", row.criado_em),
        ("atualizado_em", row.atualizado_em),
    ):
        ts = timestamp(value)
        if ts is not None:
            getattr(out, name).CopyFrom(ts)
    return out


def _addresses(recipients: Mapping[str, Any], key: str) -> list[str]:
    return [str(item) for item in recipients.get(key) or ()]


def sent_proto(row: SentEmail) -> pb.SentEmail:
    recipients = row.destinatarios or {}
    out = pb.SentEmail(
        id=str(row.id),
        usuario_id=str(row.usuario_id),
        tipo=kind(row.tipo),
        remetente=row.remetente,
        to=_addresses(recipients, "to"),
        cc=_addresses(recipients, "cc"),
        bcc=_addresses(recipients, "bcc"),
        subject=row.assunto,
        status=sent_status(row.status),
        message_id=row.message_id,
        provider_message_id=row.provider_message_id or "",
        thread_id=row.thread_id or "",
        erro=row.erro or "",
        rastrear_abertura=row.rastrear_abertura,
        aberturas=row.aberturas,
        contato_id=str(row.contato_id or ""),
        oportunidade_id=str(row.oportunidade_id or ""),
    )
    for name, value in (
        ("primeira_abertura_em", row.primeira_abertura_em),
        ("ultima_abertura_em", row.ultima_abertura_em),
        ("enviado_em", row.enviado_em),
        ("criado_em", row.criado_em),
    ):
        ts = timestamp(value)
        if ts is not None:
            getattr(out, name).CopyFrom(ts)
    return out
