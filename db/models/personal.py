"""Personal connections: one per user per tenant (WhatsApp, Google, e-mail, Instagram).

RLS adds the spec's `user_own_connection` rule on these: a member sees only their own row.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Boolean, CheckConstraint, Index, Integer, String, UniqueConstraint, text
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

LIVE = text("deletado_em IS NULL")
WHATSAPP_STATUSES = ("disconnected", "qr_pending", "connecting", "connected", "failed")
OAUTH_STATUSES = ("active", "expired", "revoked", "error")
SYNC_STATUSES = ("idle", "syncing", "ok", "error")
EMAIL_STATUSES = ("active", "expired", "revoked", "error", "testing")


class WhatsAppSession(Base):
    __tablename__ = "sessoes_whatsapp"
    __table_args__ = (
        UniqueConstraint("organizacao_id", "usuario_id"),
        CheckConstraint(in_check("status", WHATSAPP_STATUSES), name="status"),
        Index("idx_sessoes_wpp_org", "organizacao_id", postgresql_where=LIVE),
        Index("idx_sessoes_wpp_status", "organizacao_id", "status", postgresql_where=LIVE),
        Index("idx_sessoes_wpp_session", "session_name"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    usuario_id: Mapped[uuid.UUID] = user_fk()
    session_name: Mapped[str] = mapped_column(String(100))  # wpp-{org_id}-{user_id}
    phone_number: Mapped[str | None] = mapped_column(String(20))
    phone_name: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20), server_default="disconnected")
    ultimo_qr_gerado: Mapped[dt.datetime | None]
    conectado_em: Mapped[dt.datetime | None]
    desconectado_em: Mapped[dt.datetime | None]
    ultima_mensagem_em: Mapped[dt.datetime | None]
    webhook_url: Mapped[str | None]
    webhook_events: Mapped[list[str] | None] = mapped_column(
        server_default=text("ARRAY['message', 'message.ack', 'session.status']")
    )
    total_mensagens_enviadas: Mapped[int | None] = mapped_column(Integer, server_default="0")
    total_mensagens_recebidas: Mapped[int | None] = mapped_column(Integer, server_default="0")
    # Revision 0003: why it last disconnected, the last error, QR rotations without a scan,
    # and the last WAHA status applied with its time (webhooks arrive out of order).
    motivo_desconexao: Mapped[str | None] = mapped_column(String(40))
    ultimo_erro: Mapped[str | None]
    qr_rotacoes: Mapped[int] = mapped_column(Integer, server_default="0")
    waha_status: Mapped[str | None] = mapped_column(String(40))
    waha_status_em: Mapped[dt.datetime | None]
    criado_em: Mapped[dt.datetime] = created_at()
    atualizado_em: Mapped[dt.datetime] = updated_at()
    deletado_em: Mapped[dt.datetime | None]


class GoogleConnection(Base):
    __tablename__ = "conexoes_google"
    __table_args__ = (
        UniqueConstraint("organizacao_id", "usuario_id"),
        CheckConstraint(in_check("status", OAUTH_STATUSES), name="status"),
        CheckConstraint(in_check("sync_status", SYNC_STATUSES), name="sync_status"),
        Index("idx_conexoes_google_org", "organizacao_id", postgresql_where=LIVE),
        Index("idx_conexoes_google_user", "usuario_id", postgresql_where=LIVE),
        Index("idx_conexoes_google_status", "organizacao_id", "status"),
        # Push notifications name only the channel: webhooks resolve the tenant through it.
        Index(
            "uq_conexoes_google_channel",
            "channel_id",
            unique=True,
            postgresql_where=text("channel_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    usuario_id: Mapped[uuid.UUID] = user_fk()
    access_token_encrypted: Mapped[str]
    refresh_token_encrypted: Mapped[str | None]
    token_expires_at: Mapped[dt.datetime | None]
    google_user_id: Mapped[str | None] = mapped_column(String(50))
    google_user_email: Mapped[str | None] = mapped_column(String(255))
    google_user_name: Mapped[str | None] = mapped_column(String(255))
    calendar_id: Mapped[str | None] = mapped_column(String(255))
    calendar_name: Mapped[str | None] = mapped_column(String(255))
    criar_google_meet: Mapped[bool | None] = mapped_column(Boolean, server_default=text("true"))
    sincronizar_eventos: Mapped[bool | None] = mapped_column(Boolean, server_default=text("true"))
    status: Mapped[str] = mapped_column(String(20), server_default="active")
    ultimo_sync: Mapped[dt.datetime | None]
    ultimo_erro: Mapped[str | None]
    # Calendar push channel (docs/providers.md, Google Calendar) and incremental sync token (8.4).
    channel_id: Mapped[str | None] = mapped_column(String(255))
    channel_resource_id: Mapped[str | None] = mapped_column(String(255))
    channel_token_encrypted: Mapped[str | None]
    channel_expires_at: Mapped[dt.datetime | None]
    sync_token: Mapped[str | None]
    # Token upkeep (DESIGN "Tokens that stay alive"): cooldown after failed refreshes.
    refresh_falhas: Mapped[int] = mapped_column(Integer, server_default="0")
    refresh_bloqueado_ate: Mapped[dt.datetime | None]
    conectado_em: Mapped[dt.datetime | None] = mapped_column(server_default=text("now()"))
    criado_em: Mapped[dt.datetime] = created_at()
    atualizado_em: Mapped[dt.datetime] = updated_at()
    deletado_em: Mapped[dt.datetime | None]
    # Revision 0009: granted scopes and the two-way sync's state (ultimo_sync = last success).
    scopes_concedidos: Mapped[list[str] | None]
    sync_status: Mapped[str] = mapped_column(String(20), server_default="idle")
    sync_falhas: Mapped[int] = mapped_column(Integer, server_default="0")
    ultimo_sync_erro: Mapped[str | None]
    # Revision 0018: the sync holding the connection (a lease, so no transaction stays open
    # while Google answers) and whether a notification came in meanwhile.
    sync_lease: Mapped[uuid.UUID | None]
    sync_lease_ate: Mapped[dt.datetime | None]
    sync_pendente: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class EmailConnection(Base):
    __tablename__ = "conexoes_email"
    __table_args__ = (
        UniqueConstraint("organizacao_id", "usuario_id"),
        CheckConstraint(in_check("tipo", ("gmail_oauth", "smtp_manual")), name="tipo"),
        CheckConstraint(in_check("status", EMAIL_STATUSES), name="status"),
        Index("idx_conexoes_email_org", "organizacao_id", postgresql_where=LIVE),
        Index("idx_conexoes_email_user", "usuario_id", postgresql_where=LIVE),
        Index("idx_conexoes_email_status", "organizacao_id", "status"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    usuario_id: Mapped[uuid.UUID] = user_fk()
    tipo: Mapped[str] = mapped_column(String(20))
    email: Mapped[str] = mapped_column(String(255))
    nome_remetente: Mapped[str | None] = mapped_column(String(255))
    google_user_id: Mapped[str | None] = mapped_column(String(50))
    access_token_encrypted: Mapped[str | None]
    refresh_token_encrypted: Mapped[str | None]
    token_expires_at: Mapped[dt.datetime | None]
    smtp_host: Mapped[str | None] = mapped_column(String(255))
    smtp_port: Mapped[int | None] = mapped_column(Integer, server_default="587")
    smtp_user: Mapped[str | None] = mapped_column(String(255))
    smtp_pass_encrypted: Mapped[str | None]
    smtp_tls: Mapped[bool | None] = mapped_column(Boolean, server_default=text("true"))
    smtp_auto_detected: Mapped[bool | None] = mapped_column(Boolean, server_default=text("false"))
    status: Mapped[str] = mapped_column(String(20), server_default="active")
    ultimo_envio: Mapped[dt.datetime | None]
    total_emails_enviados: Mapped[int | None] = mapped_column(Integer, server_default="0")
    ultimo_erro: Mapped[str | None]
    refresh_falhas: Mapped[int] = mapped_column(Integer, server_default="0")
    refresh_bloqueado_ate: Mapped[dt.datetime | None]
    conectado_em: Mapped[dt.datetime | None] = mapped_column(server_default=text("now()"))
    criado_em: Mapped[dt.datetime] = created_at()
    atualizado_em: Mapped[dt.datetime] = updated_at()
    deletado_em: Mapped[dt.datetime | None]


class InstagramConnection(Base):
    __tablename__ = "conexoes_instagram"
    __table_args__ = (
        UniqueConstraint("organizacao_id", "usuario_id"),
        CheckConstraint(in_check("status", OAUTH_STATUSES), name="status"),
        CheckConstraint(
            in_check("token_type", ("short_lived", "long_lived"), nullable=True),
            name="token_type",
        ),
        Index("idx_conexoes_ig_org", "organizacao_id", postgresql_where=LIVE),
        Index("idx_conexoes_ig_user", "usuario_id", postgresql_where=LIVE),
        Index("idx_conexoes_ig_status", "organizacao_id", "status"),
        Index("idx_conexoes_ig_igid", "instagram_user_id"),
        # Webhooks name only the account: one live connection holds it (migration 0021).
        Index(
            "uq_conexoes_ig_live_account", "instagram_user_id", unique=True, postgresql_where=LIVE
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    usuario_id: Mapped[uuid.UUID] = user_fk()
    instagram_user_id: Mapped[str] = mapped_column(String(50))
    instagram_username: Mapped[str | None] = mapped_column(String(255))
    instagram_name: Mapped[str | None] = mapped_column(String(255))
    profile_picture_url: Mapped[str | None]
    account_type: Mapped[str | None] = mapped_column(String(20))
    access_token_encrypted: Mapped[str]
    token_type: Mapped[str | None] = mapped_column(String(20), server_default="long_lived")
    token_expires_at: Mapped[dt.datetime | None]
    permissions: Mapped[list[str] | None] = mapped_column(
        server_default=text(
            "ARRAY['instagram_business_basic', 'instagram_business_manage_messages']"
        )
    )
    webhook_subscribed: Mapped[bool | None] = mapped_column(Boolean, server_default=text("false"))
    total_mensagens_recebidas: Mapped[int | None] = mapped_column(Integer, server_default="0")
    total_mensagens_enviadas: Mapped[int | None] = mapped_column(Integer, server_default="0")
    ultima_mensagem_em: Mapped[dt.datetime | None]
    status: Mapped[str] = mapped_column(String(20), server_default="active")
    ultimo_sync: Mapped[dt.datetime | None]
    ultimo_erro: Mapped[str | None]
    refresh_falhas: Mapped[int] = mapped_column(Integer, server_default="0")
    refresh_bloqueado_ate: Mapped[dt.datetime | None]
    # Revision 0011: the room's settings (the pre-opportunity's funil_id/etapa_id).
    configuracoes: Mapped[Json] = mapped_column(server_default=EMPTY_JSON)
    conectado_em: Mapped[dt.datetime | None] = mapped_column(server_default=text("now()"))
    criado_em: Mapped[dt.datetime] = created_at()
    atualizado_em: Mapped[dt.datetime] = updated_at()
    deletado_em: Mapped[dt.datetime | None]
