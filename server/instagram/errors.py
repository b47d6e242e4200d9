"""Instagram reasons (part of the API, see instagram_service.proto)."""

from __future__ import annotations

import grpc

from server.errors import (
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    TokenExpired,
)


class PlatformNotConfigured(FailedPrecondition):
    reason = "PLATFORM_NOT_CONFIGURED"


class InstagramNotConnected(FailedPrecondition):
    reason = "CONNECTION_NOT_FOUND"


class TokenRevoked(TokenExpired):
    reason = "TOKEN_REVOKED"


class TokenTooNew(FailedPrecondition):
    reason = "TOKEN_TOO_NEW"


class MessagingWindowClosed(FailedPrecondition):
    """Outside what Instagram allows: no reply after 7 days, no automated reply after 24 h."""

    reason = "MESSAGING_WINDOW_CLOSED"


class ConversationNotFound(NotFound):
    reason = "CONVERSATION_NOT_FOUND"


class RefreshInProgress(DomainError):
    grpc_code = grpc.StatusCode.ABORTED
    reason = "REFRESH_IN_PROGRESS"
    retryable = True


class BadOAuthState(InvalidArgument):
    """STATE_INVALID, STATE_EXPIRED or STATE_REUSED (the sidecar still lands the browser on the
    frontend with this reason)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message, [FieldViolation("state", message)])
        self.reason = reason
