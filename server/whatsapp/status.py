"""WAHA's session statuses and ours, and our disconnect reasons, as data (their protobuf enums
are views.py's business).

WAHA adds statuses over time (PASSKEY_REQUIRED, PASSKEY_CONFIRMATION_REQUIRED on GOWS): any
status not listed here means "not ready" and maps to `connecting`, never to an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

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
# What the owner reads (ultimo_erro) when the device was logged out on the phone.
UNLINKED_MESSAGE = "logged out from the phone: scan a new QR to reconnect"

# Reasons that end the session on purpose: WAHA's late events (a logout restarts the session
# and emits SCAN_QR_CODE before the delete lands) must not bring it back to life.
DELIBERATE: frozenset[str] = frozenset({USER_LOGOUT, ADMIN_LOGOUT, QR_TIMEOUT})

# WhatsApp ack level -> conversas.status (docs/providers.md, WAHA).
ACK_STATUS: Mapping[int, str] = MappingProxyType(
    {-1: "failed", 0: "pending", 1: "sent", 2: "delivered", 3: "read", 4: "read"}
)
