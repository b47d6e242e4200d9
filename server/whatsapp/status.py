"""WAHA's session statuses, our statuses and their protobuf enums, as data.

WAHA adds statuses over time (PASSKEY_REQUIRED, PASSKEY_CONFIRMATION_REQUIRED on GOWS): any
status not listed here means "not ready" and maps to `connecting`, never to an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from renove.conexoes.v1 import resources_pb2
from renove.conexoes.v1 import whatsapp_service_pb2 as pb

DISCONNECTED = "disconnected"
QR_PENDING = "qr_pending"
CONNECTING = "connecting"
CONNECTED = "connected"
FAILED = "failed"

# WAHA status -> sessoes_whatsapp.status (docs/providers.md, WAHA).
WAHA_TO_OURS: Mapping[str, str] = MappingProxyType(
    {
        "SCAN_QR_CODE": QR_PENDING,
        "STARTING": CONNECTING,
        "WORKING": CONNECTED,
        "FAILED": FAILED,
        "STOPPED": DISCONNECTED,
    }
)
NOT_READY = CONNECTING


def ours(waha_status: str) -> str:
    """Our status for a WAHA status; unknown (future) statuses are "not ready"."""
    return WAHA_TO_OURS.get(waha_status, NOT_READY)


# Disconnect reasons (sessoes_whatsapp.motivo_desconexao).
USER_LOGOUT = "user_logout"
ADMIN_LOGOUT = "admin_logout"
LOGGED_OUT_FROM_PHONE = "logged_out_from_phone"
SESSION_FAILED = "session_failed"
QR_TIMEOUT = "qr_expired"
SESSION_MISSING = "session_missing"

# Reasons that end the session on purpose: WAHA's late events (a logout restarts the session
# and emits SCAN_QR_CODE before the delete lands) must not bring it back to life.
DELIBERATE: frozenset[str] = frozenset({USER_LOGOUT, ADMIN_LOGOUT, QR_TIMEOUT})

STATUS_PROTO: Mapping[str, pb.WahaSessionStatus.ValueType] = MappingProxyType(
    {
        DISCONNECTED: pb.WAHA_SESSION_STATUS_DISCONNECTED,
        QR_PENDING: pb.WAHA_SESSION_STATUS_QR_PENDING,
        CONNECTING: pb.WAHA_SESSION_STATUS_CONNECTING,
        CONNECTED: pb.WAHA_SESSION_STATUS_CONNECTED,
        FAILED: pb.WAHA_SESSION_STATUS_FAILED,
    }
)
PROTO_STATUS: Mapping[pb.WahaSessionStatus.ValueType, str] = MappingProxyType(
    {v: k for k, v in STATUS_PROTO.items()}
)

REASON_PROTO: Mapping[str, pb.WahaDisconnectReason.ValueType] = MappingProxyType(
    {
        USER_LOGOUT: pb.WAHA_DISCONNECT_REASON_USER_LOGOUT,
        ADMIN_LOGOUT: pb.WAHA_DISCONNECT_REASON_ADMIN_LOGOUT,
        LOGGED_OUT_FROM_PHONE: pb.WAHA_DISCONNECT_REASON_LOGGED_OUT_FROM_PHONE,
        SESSION_FAILED: pb.WAHA_DISCONNECT_REASON_SESSION_FAILED,
        QR_TIMEOUT: pb.WAHA_DISCONNECT_REASON_QR_TIMEOUT,
        SESSION_MISSING: pb.WAHA_DISCONNECT_REASON_SESSION_MISSING,
    }
)

# conversas.status -> MessageStatus; WhatsApp ack level -> conversas.status (1.6).
MESSAGE_STATUS_PROTO: Mapping[str, resources_pb2.MessageStatus.ValueType] = MappingProxyType(
    {
        "pending": resources_pb2.MESSAGE_STATUS_QUEUED,
        "sent": resources_pb2.MESSAGE_STATUS_SENT,
        "delivered": resources_pb2.MESSAGE_STATUS_DELIVERED,
        "read": resources_pb2.MESSAGE_STATUS_READ,
        "failed": resources_pb2.MESSAGE_STATUS_FAILED,
        "received": resources_pb2.MESSAGE_STATUS_RECEIVED,
    }
)
ACK_STATUS: Mapping[int, str] = MappingProxyType(
    {-1: "failed", 0: "pending", 1: "sent", 2: "delivered", 3: "read", 4: "read"}
)
