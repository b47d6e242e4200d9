"""SQLAlchemy models for every table of the service, and the table groups RLS is built on."""

from __future__ import annotations

from db.models.base import Base
from db.models.crm import (
    Contact,
    Meeting,
    Message,
    Opportunity,
    Organization,
    Pipeline,
    PipelineStage,
    TenantSettings,
    User,
)
from db.models.crm_link import CrmCustomField, OutboundWebhook, OutboxEvent, OutboxSequence
from db.models.email import SentEmail
from db.models.meta import (
    ConversionsApiConfig,
    ConversionsApiLog,
    CustomAudience,
    CustomAudienceMember,
    LeadAdsForm,
    MetaConnection,
    MetaLeadReceived,
    MetaPage,
    PipelineEventRecord,
)
from db.models.observability import ConnectionStatusChange, TokenRefreshAttempt
from db.models.personal import (
    EmailConnection,
    GoogleConnection,
    InstagramConnection,
    WhatsAppSession,
)
from db.models.platform import (
    Alert,
    AuditEntry,
    CircuitBreakerState,
    IdempotencyRecord,
    OAuthState,
    PendingEvent,
    PlatformCredential,
    WebhookInbox,
    WebhookRejection,
)

metadata = Base.metadata

# Tables with no tenant: no RLS, reachable only by the application role.
GLOBAL_TABLES: frozenset[str] = frozenset(
    {"platform_credentials", "circuit_breakers", "oauth_states", "webhook_rejeicoes"}
)
# Tables whose rows with organizacao_id NULL are platform-level (visible to super_admin only).
PLATFORM_ROW_TABLES: frozenset[str] = frozenset({"audit_log", "alerts", "idempotency_records"})
# Personal connections: members see only their own row (spec's user_own_connection).
PERSONAL_TABLES: frozenset[str] = frozenset(
    {
        "sessoes_whatsapp",
        "conexoes_google",
        "conexoes_email",
        "conexoes_instagram",
        "emails_enviados",
        # Messages: a member's own conversations only (WhatsApp, Instagram Direct).
        "conversas",
    }
)
# Every table isolated by organizacao_id.
TENANT_TABLES: frozenset[str] = frozenset(
    name for name, table in metadata.tables.items() if "organizacao_id" in table.c
)

__all__ = [
    "GLOBAL_TABLES",
    "PERSONAL_TABLES",
    "PLATFORM_ROW_TABLES",
    "TENANT_TABLES",
    "Alert",
    "AuditEntry",
    "Base",
    "CircuitBreakerState",
    "ConnectionStatusChange",
    "Contact",
    "ConversionsApiConfig",
    "ConversionsApiLog",
    "CrmCustomField",
    "CustomAudience",
    "CustomAudienceMember",
    "EmailConnection",
    "GoogleConnection",
    "IdempotencyRecord",
    "InstagramConnection",
    "LeadAdsForm",
    "Meeting",
    "Message",
    "MetaConnection",
    "MetaLeadReceived",
    "MetaPage",
    "OAuthState",
    "Opportunity",
    "Organization",
    "OutboundWebhook",
    "OutboxEvent",
    "OutboxSequence",
    "PendingEvent",
    "Pipeline",
    "PipelineEventRecord",
    "PipelineStage",
    "PlatformCredential",
    "SentEmail",
    "TenantSettings",
    "TokenRefreshAttempt",
    "User",
    "WebhookInbox",
    "WebhookRejection",
    "WhatsAppSession",
    "metadata",
]
