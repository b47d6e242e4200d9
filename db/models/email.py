"""E-mails sent from a user's e-mail connection (`emails_enviados`).

The spec's `conversas` holds WhatsApp and Instagram only; e-mail keeps its own ledger: the
message as it goes out (RFC 5322 bytes, Bcc left out), its recipients, the provider's ids,
and the opens counted by the tracking pixel.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import (
    EMPTY_JSON,
    Base,
    Json,
    created_at,
    in_check,
    org_fk,
    updated_at,
    user_fk,
    uuid_pk,
)

EMAIL_KINDS = ("gmail_oauth", "smtp_manual")
SENT_STATUSES = ("pending", "sent", "failed")


class SentEmail(Base):
    __tablename__ = "emails_enviados"
    __table_args__ = (
        CheckConstraint(in_check("tipo", EMAIL_KINDS), name="tipo"),
        CheckConstraint(in_check("status", SENT_STATUSES), name="status"),
        Index("idx_emails_enviados_user", "organizacao_id", "usuario_id", text("criado_em DESC")),
        Index("idx_emails_enviados_message_id", "organizacao_id", "message_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    usuario_id: Mapped[uuid.UUID] = user_fk()
    conexao_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("conexoes_email.id", ondelete="SET NULL")
    )
    tipo: Mapped[str] = mapped_column(String(20))
    remetente: Mapped[str] = mapped_column(String(255))
    # {"to": [...], "cc": [...], "bcc": [...]}: the envelope; Bcc never reaches the headers.
    destinatarios: Mapped[Json] = mapped_column(server_default=EMPTY_JSON)
    assunto: Mapped[str]
    message_id: Mapped[str] = mapped_column(String(255))
    mensagem: Mapped[bytes]
    status: Mapped[str] = mapped_column(String(20), server_default="pending")
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    thread_id: Mapped[str | None] = mapped_column(String(255))
    contato_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contatos.id"))
    oportunidade_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("oportunidades.id"))
    rastrear_abertura: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    aberturas: Mapped[int] = mapped_column(Integer, server_default="0")
    primeira_abertura_em: Mapped[dt.datetime | None]
    ultima_abertura_em: Mapped[dt.datetime | None]
    erro: Mapped[str | None]
    enviado_em: Mapped[dt.datetime | None]
    criado_em: Mapped[dt.datetime] = created_at()
    atualizado_em: Mapped[dt.datetime] = updated_at()
