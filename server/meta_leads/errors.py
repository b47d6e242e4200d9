"""Lead Ads reasons (part of the API, see meta_leads_service.proto)."""

from __future__ import annotations

from server.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    TokenExpired,
)


class MetaNotConnected(FailedPrecondition):
    reason = "CONNECTION_NOT_FOUND"


class TokenRevoked(TokenExpired):
    reason = "TOKEN_REVOKED"


class MissingPagePermission(FailedPrecondition):
    reason = "MISSING_PAGE_PERMISSION"


class PageInUse(FailedPrecondition):
    """The page is active in another tenant (which is never named)."""

    reason = "PAGE_IN_USE"


class PageNotFound(NotFound):
    reason = "PAGE_NOT_FOUND"


class MappingNotFound(NotFound):
    reason = "MAPPING_NOT_FOUND"


class MappingExists(AlreadyExists):
    reason = "MAPPING_EXISTS"


class BadOAuthState(InvalidArgument):
    """STATE_INVALID, STATE_EXPIRED or STATE_REUSED: the sidecar still lands the browser on the
    frontend, with this reason."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message, [FieldViolation("state", message)])
        self.reason = reason
