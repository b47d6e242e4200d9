"""The CRM link: the change feed (outbox) out, the core's custom fields in, outbound webhooks.

The CRM core owns users, pipelines, custom fields and contacts; this service mirrors them
(crm.py, plus `campos_customizados_crm` here) and reports what it creates or changes through
`outbox_eventos`, numbered per tenant by `outbox_sequencias`.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Index, String, UniqueConstraint, text
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

CUSTOM_FIELD_TYPES = ("text", "number", "date", "boolean", "select", "email", "phone", "url")


class OutboxEvent(Base):
    """One change this service made that the CRM core must learn (the change feed).

    Written in the transaction of the change itself; `sequencia` increases by one per tenant
    in commit order (see server/outbox/record.py), so a consumer resumes after the last one
    it saw. Kept for the configured retention.
    """

    __tablename__ = "outbox_eventos"
    __table_args__ = (
        UniqueConstraint("organizacao_id", "sequencia"),
        Index("idx_outbox_eventos_criado_em", "criado_em"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()  # the event id consumers deduplicate on
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    sequencia: Mapped[int] = mapped_column(BigInteger)
    tipo: Mapped[str] = mapped_column(String(50))  # EventKind without its prefix
    usuario_id: Mapped[uuid.UUID | None]  # the user concerned; no FK: events outlive nothing
    payload: Mapped[Json] = mapped_column(server_default=EMPTY_JSON)
    criado_em: Mapped[dt.datetime] = created_at()


class OutboxSequence(Base):
    """Per tenant: the last sequence handed out, and the last one retention removed."""

    __tablename__ = "outbox_sequencias"
    __table_args__ = (UniqueConstraint("organizacao_id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    ultima_sequencia: Mapped[int] = mapped_column(BigInteger, server_default="0")
    removida_ate: Mapped[int] = mapped_column(BigInteger, server_default="0")


class CrmCustomField(Base):
    """A custom contact field of the CRM core (`custom:<campo_id>` in Lead Ads mappings)."""

    __tablename__ = "campos_customizados_crm"
    __table_args__ = (
        UniqueConstraint("organizacao_id", "campo_id"),
        CheckConstraint(in_check("tipo", CUSTOM_FIELD_TYPES), name="tipo"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    campo_id: Mapped[str] = mapped_column(String(64))  # the core's id
    rotulo: Mapped[str] = mapped_column(String(255))
    tipo: Mapped[str] = mapped_column(String(20))
    core_atualizado_em: Mapped[dt.datetime]
    deletado_em: Mapped[dt.datetime | None]
    criado_em: Mapped[dt.datetime] = created_at()
    atualizado_em: Mapped[dt.datetime] = updated_at()


class OutboundWebhook(Base):
    """`webhook_saida`: a tenant's endpoint that receives change-feed events, signed."""

    __tablename__ = "webhooks_saida"
    __table_args__ = (
        Index("idx_webhooks_saida_org", "organizacao_id", postgresql_where=text("ativo")),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    url: Mapped[str]
    # EventKind names without prefix; empty = every kind.
    eventos: Mapped[list[str]] = mapped_column(server_default=text("'{}'::text[]"))
    descricao: Mapped[str | None] = mapped_column(String(255))
    segredo_encrypted: Mapped[str]
    ativo: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    criado_por: Mapped[uuid.UUID | None] = user_fk(nullable=True)
    criado_em: Mapped[dt.datetime] = created_at()
    atualizado_em: Mapped[dt.datetime] = updated_at()
    deletado_em: Mapped[dt.datetime | None]
