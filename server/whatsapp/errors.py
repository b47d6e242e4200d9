"""WhatsApp reasons (part of the API, see whatsapp_service.proto)."""

from __future__ import annotations

from server.errors import FailedPrecondition, NotFound


class SessionNotPending(FailedPrecondition):
    reason = "SESSION_NOT_PENDING"


class SessionNotConnected(FailedPrecondition):
    reason = "SESSION_NOT_CONNECTED"


class ContactNotFound(NotFound):
    reason = "CONTACT_NOT_FOUND"


class MessageNotFound(NotFound):
    reason = "MESSAGE_NOT_FOUND"
