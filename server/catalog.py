"""The connection catalog: every kind of connection and the facts the rest of the code reads.

One entry per `ConnectionType` of the contract. A provider's facts used to be spread over a
dozen tables; what can be read from here is read from here (the overview's scope and member
rules), and tests/integration/test_connection_catalog.py checks the rest against this list: the
service's permission rules, each operation's retry policy and breaker, the platform
credentials, the overview row, and the sandbox fake of every room that is built.
docs/adding-a-connection.md lists every table a new provider touches.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from renove.conexoes.v1 import resources_pb2 as rpb

from server.resilience import operations as ops
from server.resilience.operations import Operation

T = rpb.ConnectionType


class Scope(enum.StrEnum):
    PERSONAL = "personal"  # one per user; members see and change only their own
    TENANT = "tenant"  # one per tenant


class MemberAccess(enum.StrEnum):
    """What a member may do with it (spec "Modelo de Permissoes para Member")."""

    ALWAYS = "always"  # their own connection, no grant needed
    GRANT = "grant"  # only when an admin granted `conexao.<grant>`
    ADMIN_ONLY = "admin_only"


@dataclass(frozen=True)
class ConnectionKind:
    """Attributes:
    type: the contract's ConnectionType value.
    key: its name in stored rows, alerts and events (`connection_type`).
    service: the gRPC service that manages it (server/services.py).
    scope, access: who owns it and who may connect it.
    grant: the `usuarios.permissoes_conexoes` key when access is GRANT.
    operations: the queued job types its room handles.
    breakers: the provider breakers its calls go through (BREAKER_CONFIGS keys).
    platform: the super admin's app credentials it needs (platform CATALOG key), or None when
        the user brings every credential (SMTP).
    sandbox: the sandbox mount of its provider's fake (sandbox/app.py), or None for SMTP,
        which tests and development serve with a real SMTP server (aiosmtpd).
    """

    type: rpb.ConnectionType.ValueType
    key: str
    service: str
    scope: Scope
    access: MemberAccess
    operations: tuple[Operation, ...]
    breakers: tuple[str, ...]
    platform: str | None
    sandbox: str | None
    grant: str | None = None


_P, _T = Scope.PERSONAL, Scope.TENANT
_ALWAYS, _GRANT, _ADMIN = MemberAccess.ALWAYS, MemberAccess.GRANT, MemberAccess.ADMIN_ONLY

KINDS: Mapping[rpb.ConnectionType.ValueType, ConnectionKind] = MappingProxyType(
    {
        k.type: k
        for k in (
            ConnectionKind(
                T.CONNECTION_TYPE_WHATSAPP,
                "whatsapp",
                "WhatsAppService",
                _P,
                _ALWAYS,
                (ops.WAHA_EVENT, ops.WHATSAPP_SEND, ops.WAHA_CLEANUP, ops.WAHA_RECOVER),
                ("waha",),
                platform="waha",
                sandbox="/waha",
            ),
            ConnectionKind(
                T.CONNECTION_TYPE_META_LEAD_ADS,
                "meta_lead_ads",
                "MetaLeadsService",
                _T,
                _GRANT,
                (ops.META_LEADGEN, ops.META_REVOKE),
                ("meta_graph",),
                platform="meta",
                sandbox="/graph",
                grant="meta_lead_ads",
            ),
            ConnectionKind(
                T.CONNECTION_TYPE_META_CONVERSIONS_API,
                "meta_conversions_api",
                "ConversionsService",
                _T,
                _ADMIN,
                (ops.CAPI_EVENT,),
                ("meta_capi",),
                platform="meta",
                sandbox="/graph",
            ),
            ConnectionKind(
                T.CONNECTION_TYPE_META_CUSTOM_AUDIENCES,
                "meta_custom_audiences",
                "AudiencesService",
                _T,
                _ADMIN,
                (ops.AUDIENCE_SYNC, ops.AUDIENCE_DELETE, ops.AUDIENCE_REMOVE),
                ("meta_audiences",),
                platform="meta",
                sandbox="/graph",
            ),
            ConnectionKind(
                T.CONNECTION_TYPE_GOOGLE_CALENDAR,
                "google_calendar",
                "GoogleCalendarService",
                _P,
                _ALWAYS,
                (ops.GOOGLE_CALENDAR_NOTIFICATION, ops.GOOGLE_CALENDAR_CREATE),
                ("google_calendar",),
                platform="google",
                sandbox="/google",
            ),
            ConnectionKind(
                T.CONNECTION_TYPE_EMAIL_GMAIL_OAUTH,
                "email_gmail_oauth",
                "EmailService",
                _P,
                _ALWAYS,
                (ops.EMAIL_SEND,),
                ("gmail",),
                platform="google",
                sandbox="/google",
            ),
            ConnectionKind(
                T.CONNECTION_TYPE_EMAIL_SMTP_MANUAL,
                "email_smtp_manual",
                "EmailService",
                _P,
                _ALWAYS,
                (ops.EMAIL_SEND,),
                ("smtp",),
                platform=None,
                sandbox=None,
            ),
            ConnectionKind(
                T.CONNECTION_TYPE_INSTAGRAM_DIRECT,
                "instagram_direct",
                "InstagramService",
                _P,
                _GRANT,
                (ops.INSTAGRAM_EVENT, ops.INSTAGRAM_SEND),
                ("instagram",),
                platform="instagram",
                sandbox="/instagram",
                grant="instagram_direct",
            ),
        )
    }
)

# Job types that belong to no single connection.
SHARED_OPERATIONS: tuple[Operation, ...] = (ops.OUTBOUND_WEBHOOK,)


def kind(value: rpb.ConnectionType.ValueType) -> ConnectionKind:
    return KINDS[value]
