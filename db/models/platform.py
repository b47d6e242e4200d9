"""Plumbing: the job queue, webhook inbox, audit, alerts, idempotency and global state."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    CheckConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, synonym

from db.models.base import (
    EMPTY_JSON,
    NOW,
    Base,
    Json,
    created_at,
    in_check,
    org_fk,
    updated_at,
    user_fk,
    uuid_pk,
)

JOB_STATUSES = ("pending", "processing", "completed", "failed", "discarded")


class PendingEvent(Base):
    """`eventos_pendentes`: the outbound job queue and its dead-letter queue (`status='failed'`).

    The spec's columns plus the leasing and idempotency columns. The next attempt time is the
    spec's `proxima_tentativa` and the last error its `ultimo_erro`; `proximo_retry_em` and
    `last_error` are ORM synonyms for them.
    """

    __tablename__ = "eventos_pendentes"
    __table_args__ = (
        UniqueConstraint("organizacao_id", "idempotency_key"),
        CheckConstraint(in_check("status", JOB_STATUSES), name="status"),
        # The claim's two ordered scans (migration 0015): lost leases, then due jobs.
        Index(
            "idx_eventos_pendentes_due",
            "proxima_tentativa",
            "criado_em",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "idx_eventos_pendentes_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'processing'"),
        ),
        # No index on organizacao_id alone: the unique key above leads with it (migration
        # 0024 dropped the duplicate, which every claim and completion had to update).
        Index(
            "idx_eventos_pendentes_dlq",
            "organizacao_id",
            "atualizado_em",
            postgresql_where=text("status = 'failed'"),
        ),
        # An outbound webhook delivery's earlier ones, by endpoint and feed sequence
        # (migration 0019: one delivery at a time per endpoint, in order).
        Index(
            "ix_eventos_pendentes_webhook_order",
            "organizacao_id",
            text("(payload->>'endpoint_id')"),
            text("((payload->>'sequence')::bigint)"),
            postgresql_where=text(
                "operacao = 'outbound_webhook' AND status IN ('pending', 'processing')"
            ),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID] = org_fk()
    tipo: Mapped[str] = mapped_column(String(50))  # 'capi_event', 'audience_sync', ...
    operacao: Mapped[str] = mapped_column(String(100))  # the worker handler that runs it
    destino: Mapped[str] = mapped_column(String(255))
    payload: Mapped[Json]
    idempotency_key: Mapped[str] = mapped_column(
        String(255), server_default=text("gen_random_uuid()::text")
    )
    tentativas: Mapped[int] = mapped_column(Integer, server_default="0")
    max_tentativas: Mapped[int] = mapped_column(Integer, server_default="5")
    proxima_tentativa: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    ultimo_erro: Mapped[str | None]
    status: Mapped[str] = mapped_column(String(20), server_default="pending")
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[dt.datetime | None]
    criado_em: Mapped[dt.datetime] = created_at()
    atualizado_em: Mapped[dt.datetime] = updated_at()
    # The request id of the call or webhook that enqueued the job: its logs carry it on.
    request_id: Mapped[str | None] = mapped_column(String(64))
    # W3C trace context of the enqueuing span, when tracing is on (the job's span continues it).
    traceparent: Mapped[str | None] = mapped_column(String(55))

    proximo_retry_em = synonym("proxima_tentativa")
    last_error = synonym("ultimo_erro")


class WebhookInbox(Base):
    """Raw, verified provider deliveries, deduplicated by the provider's own event id."""

    __tablename__ = "webhook_inbox"
    __table_args__ = (
        UniqueConstraint("provider", "provider_event_id"),
        CheckConstraint(in_check("verdict", ("accepted", "duplicate", "rejected")), name="verdict"),
        Index("idx_webhook_inbox_org", "organizacao_id", text("received_at DESC")),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID | None] = org_fk(nullable=True)  # NULL until resolved
    provider: Mapped[str] = mapped_column(String(30))
    provider_event_id: Mapped[str] = mapped_column(String(255))
    headers: Mapped[Json] = mapped_column(server_default=EMPTY_JSON)
    query: Mapped[Json] = mapped_column(server_default=EMPTY_JSON)
    body: Mapped[bytes]
    verdict: Mapped[str] = mapped_column(String(20), server_default="accepted")
    received_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    processed_at: Mapped[dt.datetime | None]


class PlatformCredential(Base):
    """Global app credentials (Meta App, Google App, WAHA), set by the super admin only."""

    __tablename__ = "platform_credentials"

    provider: Mapped[str] = mapped_column(String(30), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value_encrypted: Mapped[str | None]
    value_plain: Mapped[str | None]
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)
    updated_by: Mapped[uuid.UUID | None]


class AuditEntry(Base):
    """`audit_log`: `organizacao_id` NULL marks a platform-level entry (super admin only)."""

    __tablename__ = "audit_log"
    # Platform-level rows may be written by callers that cannot read them back.
    __mapper_args__ = {"eager_defaults": False}  # noqa: RUF012
    __table_args__ = (Index("idx_audit_log_org", "organizacao_id", text("criado_em DESC")),)

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID | None] = org_fk(nullable=True)
    usuario_id: Mapped[uuid.UUID | None]  # no FK: service and platform actors have no row
    actor_role: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(100))
    entity_type: Mapped[str | None] = mapped_column(String(50))
    entity_id: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[Json] = mapped_column(server_default=EMPTY_JSON)
    criado_em: Mapped[dt.datetime] = created_at()


class Alert(Base):
    __tablename__ = "alerts"
    __mapper_args__ = {"eager_defaults": False}  # noqa: RUF012
    __table_args__ = (
        CheckConstraint(
            in_check("audience", ("super_admin", "tenant_admin", "user")), name="audience"
        ),
        CheckConstraint(in_check("severity", ("info", "warning", "critical")), name="severity"),
        Index("idx_alerts_org", "organizacao_id", text("criado_em DESC")),
        Index(
            "idx_alerts_unread",
            "organizacao_id",
            "audience",
            "usuario_id",
            postgresql_where=text("lido_em IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID | None] = org_fk(nullable=True)  # NULL: super-admin alert
    audience: Mapped[str] = mapped_column(String(20))
    usuario_id: Mapped[uuid.UUID | None] = user_fk(nullable=True)
    kind: Mapped[str] = mapped_column(String(50))
    severity: Mapped[str] = mapped_column(String(20), server_default="warning")
    message: Mapped[str]
    details: Mapped[Json] = mapped_column(server_default=EMPTY_JSON)
    criado_em: Mapped[dt.datetime] = created_at()
    lido_em: Mapped[dt.datetime | None]


class IdempotencyRecord(Base):
    """AIP-155 `request_id`: the first response of a mutating RPC, replayed on a retry."""

    __tablename__ = "idempotency_records"
    __table_args__ = (
        # NULLS NOT DISTINCT: platform-level calls (no tenant) dedupe too.
        UniqueConstraint(
            "organizacao_id",
            "caller",
            "rpc",
            "request_id",
            name="idempotency_records_slot_key",
            postgresql_nulls_not_distinct=True,
        ),
        Index("idx_idempotency_records_criado", "criado_em"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organizacao_id: Mapped[uuid.UUID | None] = org_fk(nullable=True)
    # The user (`user:<id>`) or service identity (`service`) that sent the request.
    caller: Mapped[str] = mapped_column(String(120))
    request_id: Mapped[str] = mapped_column(String(100))
    rpc: Mapped[str] = mapped_column(String(200))
    # `<key id>:<HMAC-SHA256 of the request>`: reveals nothing about secrets in the request.
    request_hash: Mapped[str | None] = mapped_column(String(120))
    response: Mapped[bytes | None]
    criado_em: Mapped[dt.datetime] = created_at()
    # When the attempt now running took the slot (an unanswered slot older than the
    # in-progress lease was abandoned and may be taken over).
    claimed_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)


class CircuitBreakerState(Base):
    """One breaker per provider, shared by every replica (global, no RLS)."""

    __tablename__ = "circuit_breakers"
    __table_args__ = (
        CheckConstraint(in_check("state", ("closed", "open", "half_open")), name="state"),
    )

    provider: Mapped[str] = mapped_column(String(50), primary_key=True)
    state: Mapped[str] = mapped_column(String(20), server_default="closed")
    failures: Mapped[int] = mapped_column(Integer, server_default="0")
    opened_at: Mapped[dt.datetime | None]
    # The single half-open probe: who holds it and until when.
    half_open_probe_at: Mapped[dt.datetime | None]
    probe_lease_owner: Mapped[str | None] = mapped_column(String(255))
    probe_lease_expires_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=NOW)


class OAuthState(Base):
    """Single-use OAuth `state` nonces (global: the callback has no tenant yet)."""

    __tablename__ = "oauth_states"
    __table_args__ = (Index("idx_oauth_states_expires", "expires_at"),)

    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    criado_em: Mapped[dt.datetime] = created_at()


class WebhookRejection(Base):
    """Unsigned or badly signed webhooks counted per source address and minute (global, no
    RLS: no tenant is known for them). The first of a minute is also audited, once."""

    __tablename__ = "webhook_rejeicoes"

    origem: Mapped[str] = mapped_column(String(64), primary_key=True)
    minuto: Mapped[dt.datetime] = mapped_column(primary_key=True)
    sem_assinatura: Mapped[int] = mapped_column(Integer, server_default="0")
    assinatura_invalida: Mapped[int] = mapped_column(Integer, server_default="0")
    ultima_em: Mapped[dt.datetime] = mapped_column(server_default=NOW)
