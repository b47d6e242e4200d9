"""Minimal versions of the CRM tables the spec borrows from other documents.

This service owns just enough of each for the connections to work end to end
(where the spec contradicts itself, docs/architecture.md); names follow the spec.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import JSONB
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

USER_ROLES = ("super_admin", "admin", "member")
DEFAULT_MEMBER_GRANTS = text("""'{"meta_lead_ads": false, "instagram_direct": false}'::jsonb""")
E164 = r"^\+[1-9][0-9]{6,14}$"


class Organization(Base):
    __tablename__ = "organizacoes_saas"

    id: Mapped[uuid.UUID] = uuid_pk()
    nome: Mapped[str] = mapped_column(String(255))
    criado_em: Mapped[dt.datetime] = created_at()
    # Lead Ads distribution cursor: the last user a lead was handed to, across all forms.
    lead_ads_ultimo_owner_id: Mapped[uuid.UUID | None]


class User(Base):
    __tablename__ = "usuarios"
    __table_args__ = (
        CheckConstraint(in_check("role", USER_ROLES), name="role"),
        Index("idx_usuarios_org", "organizacao_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    nome: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), server_default="member")
    ativo: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # Admin-granted member permissions ("Modelo de Permissoes para Member").
    permissoes_conexoes: Mapped[Json] = mapped_column(server_default=DEFAULT_MEMBER_GRANTS)
    # CRM directory: whether Lead Ads distributes leads to this user, and the core's
    # updated_at of the last write applied (older writes are ignored).
    participa_distribuicao: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    core_atualizado_em: Mapped[dt.datetime | None]
    deletado_em: Mapped[dt.datetime | None]
    criado_em: Mapped[dt.datetime] = created_at()


class Pipeline(Base):
    __tablename__ = "funis"
    __table_args__ = (Index("idx_funis_org", "organizacao_id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    nome: Mapped[str] = mapped_column(String(255))
    ordem: Mapped[int] = mapped_column(Integer, server_default="0")
    core_atualizado_em: Mapped[dt.datetime | None]
    deletado_em: Mapped[dt.datetime | None]
    criado_em: Mapped[dt.datetime] = created_at()


class PipelineStage(Base):
    __tablename__ = "etapas_funil"
    __table_args__ = (
        Index("idx_etapas_funil_funil", "funil_id", "ordem"),
        Index("idx_etapas_funil_org", "organizacao_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    funil_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("funis.id", ondelete="CASCADE"))
    nome: Mapped[str] = mapped_column(String(255))
    ordem: Mapped[int] = mapped_column(Integer, server_default="0")
    deletado_em: Mapped[dt.datetime | None]
    criado_em: Mapped[dt.datetime] = created_at()


class Contact(Base):
    __tablename__ = "contatos"
    __table_args__ = (
        CheckConstraint(f"telefone IS NULL OR telefone ~ '{E164}'", name="telefone_e164"),
        Index("idx_contatos_org", "organizacao_id", postgresql_where=text("deletado_em IS NULL")),
        Index("idx_contatos_email", "organizacao_id", "email"),
        # One live contact per phone / Instagram sender: inbound messages upsert on these.
        Index(
            "uq_contatos_telefone",
            "organizacao_id",
            "telefone",
            unique=True,
            postgresql_where=text("telefone IS NOT NULL AND deletado_em IS NULL"),
        ),
        Index(
            "uq_contatos_instagram_igsid",
            "organizacao_id",
            "instagram_igsid",
            unique=True,
            postgresql_where=text("instagram_igsid IS NOT NULL AND deletado_em IS NULL"),
        ),
        Index(
            "uq_contatos_whatsapp_lid",
            "organizacao_id",
            "whatsapp_lid",
            unique=True,
            postgresql_where=text("whatsapp_lid IS NOT NULL AND deletado_em IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    nome: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(255))
    telefone: Mapped[str | None] = mapped_column(String(20))  # E.164
    empresa: Mapped[str | None] = mapped_column(String(255))
    cargo: Mapped[str | None] = mapped_column(String(255))
    cidade: Mapped[str | None] = mapped_column(String(255))
    # CRM directory mirror: every e-mail and phone the core knows (`email`/`telefone` hold
    # the first of each), address, marketing consent and the core's last updated_at.
    emails: Mapped[list[str]] = mapped_column(server_default=text("'{}'::text[]"))
    telefones: Mapped[list[str]] = mapped_column(server_default=text("'{}'::text[]"))
    estado: Mapped[str | None] = mapped_column(String(100))
    cep: Mapped[str | None] = mapped_column(String(20))
    pais: Mapped[str | None] = mapped_column(String(2))
    consentimento: Mapped[bool | None] = mapped_column(Boolean)
    core_atualizado_em: Mapped[dt.datetime | None]
    campos_customizados: Mapped[Json] = mapped_column(server_default=EMPTY_JSON)
    tags: Mapped[list[str]] = mapped_column(server_default=text("'{}'::text[]"))
    origem: Mapped[str | None] = mapped_column(String(50))
    owner_id: Mapped[uuid.UUID | None] = user_fk(nullable=True)
    # Instagram Direct (section 7): the sender's IGSID and the 24h reply window (7.8).
    instagram_igsid: Mapped[str | None] = mapped_column(String(64))
    instagram_username: Mapped[str | None] = mapped_column(String(255))
    instagram_window_expires_at: Mapped[dt.datetime | None]
    criado_em: Mapped[dt.datetime] = created_at()
    atualizado_em: Mapped[dt.datetime] = updated_at()
    deletado_em: Mapped[dt.datetime | None]
    # Migration 0016: WhatsApp's hidden id of a sender ("...@lid") whose phone is unknown or
    # was learned later (the contact is then the phone's).
    whatsapp_lid: Mapped[str | None] = mapped_column(String(64))
    # Migration 0008: the event_id of the CAPI Lead sent for this contact (one per contact).
    capi_lead_event_id: Mapped[str | None] = mapped_column(String(100))


class Opportunity(Base):
    __tablename__ = "oportunidades"
    __table_args__ = (
        CheckConstraint(in_check("status", ("open", "won", "lost")), name="status"),
        Index("idx_oportunidades_org", "organizacao_id", "status"),
        Index("idx_oportunidades_contato", "contato_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    contato_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contatos.id"))
    funil_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("funis.id"))
    etapa_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("etapas_funil.id"))
    owner_id: Mapped[uuid.UUID | None] = user_fk(nullable=True)
    titulo: Mapped[str | None] = mapped_column(String(255))
    valor: Mapped[Decimal | None]
    status: Mapped[str] = mapped_column(String(20), server_default="open")
    origem: Mapped[str | None] = mapped_column(String(50))
    criado_em: Mapped[dt.datetime] = created_at()
    atualizado_em: Mapped[dt.datetime] = updated_at()


class Message(Base):
    """One WhatsApp or Instagram message (`conversas`)."""

    __tablename__ = "conversas"
    __table_args__ = (
        CheckConstraint(in_check("canal", ("whatsapp", "instagram")), name="canal"),
        CheckConstraint(in_check("direcao", ("inbound", "outbound")), name="direcao"),
        # The provider's message id: a redelivered webhook finds the row it already wrote.
        Index(
            "uq_conversas_external_id",
            "organizacao_id",
            "canal",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
        ),
        Index("idx_conversas_contato", "organizacao_id", "contato_id", "criado_em"),
        Index("idx_conversas_usuario", "organizacao_id", "usuario_id", "criado_em"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    canal: Mapped[str] = mapped_column(String(20))
    contato_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contatos.id"))
    usuario_id: Mapped[uuid.UUID | None] = user_fk(nullable=True)
    direcao: Mapped[str] = mapped_column(String(10))
    external_id: Mapped[str | None] = mapped_column(String(255))
    conteudo: Mapped[str | None]
    tipo: Mapped[str] = mapped_column(String(20), server_default="text")
    status: Mapped[str | None] = mapped_column(String(20))  # pending/sent/delivered/read/failed
    ack: Mapped[int | None] = mapped_column(Integer)  # WAHA ack level
    enviado_em: Mapped[dt.datetime | None]
    # Section 7.8: set by trigger update_instagram_window on inbound Instagram messages.
    instagram_window_expires_at: Mapped[dt.datetime | None]
    metadata_: Mapped[Json] = mapped_column("metadata", server_default=EMPTY_JSON)
    criado_em: Mapped[dt.datetime] = created_at()
    atualizado_em: Mapped[dt.datetime] = updated_at()


class Meeting(Base):
    __tablename__ = "meetings"
    __table_args__ = (
        Index("idx_meetings_org", "organizacao_id", "inicio"),
        Index(
            "uq_meetings_google_event",
            "organizacao_id",
            "google_event_id",
            unique=True,
            postgresql_where=text("google_event_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    usuario_id: Mapped[uuid.UUID | None] = user_fk(nullable=True)
    contato_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contatos.id"))
    oportunidade_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("oportunidades.id"))
    titulo: Mapped[str] = mapped_column(String(255))
    descricao: Mapped[str | None]
    inicio: Mapped[dt.datetime]
    fim: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(String(20), server_default="scheduled")
    google_event_id: Mapped[str | None]
    google_meet_link: Mapped[str | None]
    criado_em: Mapped[dt.datetime] = created_at()
    atualizado_em: Mapped[dt.datetime] = updated_at()
    # Revision 0009: the calendar the event lives in, Google's last change applied, and the
    # attendees with their answers ([{"email", "response_status"}]).
    google_calendar_id: Mapped[str | None]
    google_atualizado_em: Mapped[dt.datetime | None]
    participantes: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB(), server_default=text("'[]'::jsonb")
    )
    # Revision 0018: when the CRM's last applied word about the meeting happened.
    crm_atualizado_em: Mapped[dt.datetime | None]


class TenantSettings(Base):
    """`configuracoes_tenant`: `configuracoes_extra.retry_config` tunes retries per tenant."""

    __tablename__ = "configuracoes_tenant"

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizacoes_saas.id"), unique=True
    )
    configuracoes_extra: Mapped[Json] = mapped_column(server_default=EMPTY_JSON)
    criado_em: Mapped[dt.datetime] = created_at()
    atualizado_em: Mapped[dt.datetime] = updated_at()
