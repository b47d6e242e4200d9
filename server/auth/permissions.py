"""The spec's permission matrix as data: every RPC of the contract -> the rule that guards it.

Section "Roles e Permissoes": WhatsApp, Google Calendar, Gmail and SMTP are personal and open to
every tenant user (each on their own connection); Lead Ads and Instagram Direct need an admin's
grant for members; Conversions API and Custom Audiences are admin only; platform app
credentials are super-admin only. Webhooks and OAuth redirects arrive through the sidecar's
service identity. A method missing here is refused (server/interceptors/guard.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from server.auth.caller import Role
from server.auth.rules import ADMIN, ADMIN_OR_SERVICE, ANY_USER, SERVICE, SUPER_ADMIN, Rule, granted

PACKAGE = "renove.conexoes.v1"

LEAD_ADS = granted("meta_lead_ads")
# Admins read their tenant; a super admin with no tenant in the token reads the platform's.
ADMIN_OR_PLATFORM = Rule(ADMIN.roles, needs_tenant=False, label="tenant admin or super admin")
USER_OR_PLATFORM = Rule(ANY_USER.roles, needs_tenant=False, label="any user or super admin")
INSTAGRAM = granted("instagram_direct")
# Sending is also open to the service identity: other CRM services' automations (never tagged
# HUMAN_AGENT, see server/instagram/window.py).
INSTAGRAM_SEND = Rule(
    INSTAGRAM.roles | {Role.SERVICE}, member_grant="instagram_direct", label="instagram_direct"
)
# The CRM core (service identity naming the tenant) and the tenant's users.
USER_OR_SERVICE = Rule(ANY_USER.roles | SERVICE.roles, label="any user or the CRM core")
# The change feed: any user, a platform super admin, and the CRM core.
FEED = Rule(ANY_USER.roles | SERVICE.roles, needs_tenant=False, label="user or CRM core")

_BY_SERVICE: dict[str, dict[str, Rule]] = {
    "WhatsAppService": {
        "StartWhatsAppSession": ANY_USER,
        "GetWhatsAppQrCode": ANY_USER,
        "RequestWhatsAppPairingCode": ANY_USER,
        "GetWhatsAppStatus": ANY_USER,
        "WatchWhatsAppStatus": ANY_USER,
        "DisconnectWhatsApp": ANY_USER,
        "ListWhatsAppSessions": ADMIN,
        "SendWhatsAppMessage": ANY_USER,
        "ListWhatsAppConversations": ANY_USER,
        "ListWhatsAppMessages": ANY_USER,
        "MarkWhatsAppConversationRead": ANY_USER,
        "GetWhatsAppMessageMedia": ANY_USER,
    },
    "MetaLeadsService": {
        "GetMetaAuthUrl": LEAD_ADS,
        "HandleMetaOAuthCallback": SERVICE,
        "GetMetaConnection": LEAD_ADS,
        "DisconnectMeta": LEAD_ADS,
        "ListMetaPages": LEAD_ADS,
        "SelectMetaPage": LEAD_ADS,
        "ListMetaLeadForms": LEAD_ADS,
        "ListLeadFormMappings": LEAD_ADS,
        "CreateLeadFormMapping": LEAD_ADS,
        "GetLeadFormMapping": LEAD_ADS,
        "UpdateLeadFormMapping": LEAD_ADS,
        "DeleteLeadFormMapping": LEAD_ADS,
    },
    "ConversionsService": {
        "GetCapiConfig": ADMIN,
        "SaveCapiConfig": ADMIN,
        "TestCapiConnection": ADMIN,
        "ListCapiLogs": ADMIN,
        "GetCapiStats": ADMIN,
    },
    "AudiencesService": {
        "ListAdAccounts": ADMIN,
        "ListAudiences": ADMIN,
        "CreateAudience": ADMIN,
        "GetAudience": ADMIN,
        "UpdateAudience": ADMIN,
        "DeleteAudience": ADMIN,
        "SyncAudience": ADMIN,
        "ListAudienceMembers": ADMIN,
    },
    "GoogleCalendarService": {
        "GetGoogleAuthUrl": ANY_USER,
        "HandleGoogleOAuthCallback": SERVICE,
        "GetGoogleConnection": ANY_USER,
        "DisconnectGoogle": ANY_USER,
        "ListGoogleCalendars": ANY_USER,
        "SelectGoogleCalendar": ANY_USER,
        "ListGoogleCalendarEvents": ANY_USER,
        "CreateGoogleCalendarEvent": ANY_USER,
        "UpdateGoogleCalendarEvent": ANY_USER,
        "CancelGoogleCalendarEvent": ANY_USER,
    },
    "EmailService": {
        "GetGmailAuthUrl": ANY_USER,
        "HandleGmailOAuthCallback": SERVICE,
        "SaveSmtpConfig": ANY_USER,
        "TestSmtpConnection": ANY_USER,
        "DetectSmtpSettings": ANY_USER,
        "GetEmailConnection": ANY_USER,
        "DisconnectEmail": ANY_USER,
        "SendEmail": ANY_USER,
        "GetSentEmail": ANY_USER,
        # The tracking pixel reaches the server only through the sidecar.
        "RecordEmailOpen": SERVICE,
    },
    "InstagramService": {
        "GetInstagramAuthUrl": INSTAGRAM,
        "HandleInstagramOAuthCallback": SERVICE,
        "GetInstagramConnection": INSTAGRAM,
        "DisconnectInstagram": INSTAGRAM,
        "SendInstagramMessage": INSTAGRAM_SEND,
        "ListInstagramConversations": INSTAGRAM,
        "ListInstagramMessages": INSTAGRAM,
        # "Sistema/Admin": the scheduler refreshes ahead of expiry; an admin may force it.
        "RefreshInstagramToken": ADMIN_OR_SERVICE,
        # Each user's own connection; an admin may set a member's (checked in the room).
        "UpdateInstagramSettings": INSTAGRAM,
    },
    "ConnectionsService": {
        "GetConnectionsOverview": ANY_USER,
        "ListMemberPermissions": ADMIN,
        "UpdateMemberPermissions": ADMIN,
        "ListPlatformCredentials": SUPER_ADMIN,
        "GetPlatformCredentials": SUPER_ADMIN,
        "UpdatePlatformCredentials": SUPER_ADMIN,
        "ListAuditLog": ADMIN_OR_PLATFORM,
        "ListFailedEvents": ADMIN,
        "RetryFailedEvent": ADMIN,
        "DiscardFailedEvent": ADMIN,
        "GetIntegrationHealth": ADMIN,
        "GetRetrySettings": ADMIN,
        "UpdateRetrySettings": ADMIN,
        "ListCircuitBreakers": ADMIN_OR_PLATFORM,
        # Each user reads their own alerts; admins also the tenant's.
        "ListAlerts": USER_OR_PLATFORM,
        "AcknowledgeAlert": USER_OR_PLATFORM,
        "WatchEvents": FEED,
    },
    # The spec's KPIs and the status history behind them: the tenant's admins.
    "KpisService": {
        "GetConnectionKpis": ADMIN,
        "ListConnectionStatusHistory": ADMIN,
    },
    "WebhookIngressService": {
        "DeliverWahaWebhook": SERVICE,
        "VerifyMetaLeadsWebhook": SERVICE,
        "DeliverMetaLeadsWebhook": SERVICE,
        "VerifyInstagramWebhook": SERVICE,
        "DeliverInstagramWebhook": SERVICE,
        "DeliverGoogleCalendarWebhook": SERVICE,
    },
    # The CRM core fills the directory; the frontend reads its dropdowns.
    "CrmDirectoryService": {
        **{
            f"{verb}{entity}": SERVICE
            for entity in ("CrmUser", "CrmPipeline", "CrmCustomField", "CrmContact")
            for verb in ("Upsert", "Delete")
        },
        **{
            f"BatchUpsert{entities}": SERVICE
            for entities in ("CrmUsers", "CrmPipelines", "CrmCustomFields", "CrmContacts")
        },
        "ListCrmPipelines": USER_OR_SERVICE,
        "ListCrmFields": USER_OR_SERVICE,
    },
    "OutboundWebhooksService": {
        "CreateOutboundWebhook": ADMIN,
        "ListOutboundWebhooks": ADMIN,
        "UpdateOutboundWebhook": ADMIN,
        "DeleteOutboundWebhook": ADMIN,
    },
    "CrmEventsService": {
        # Other CRM services publish pipeline events as a service, or a tenant admin does.
        "PublishPipelineEvent": ADMIN_OR_SERVICE,
    },
}

PERMISSIONS: Mapping[str, Rule] = {
    f"/{PACKAGE}.{service}/{method}": rule
    for service, methods in _BY_SERVICE.items()
    for method, rule in methods.items()
}
