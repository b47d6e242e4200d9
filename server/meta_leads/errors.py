"""Lead Ads reasons (part of the API, see meta_leads_service.proto)."""

from __future__ import annotations

from server.errors import AlreadyExists, FailedPrecondition, NotFound, TokenExpired


class PlatformNotConfigured(FailedPrecondition):
    reason = "PLATFORM_NOT_CONFIGURED"


class MetaNotConnected(FailedPrecondition):
    reason = "CONNECTION_NOT_FOUND"


class TokenRevoked(TokenExpired):
    reason = "TOKEN_REVOKED"


class MissingPagePermission(FailedPrecondition):
    reason = "MISSING_PAGE_PERMISSION"


class PageNotFound(NotFound):
    reason = "PAGE_NOT_FOUND"


class MappingNotFound(NotFound):
    reason = "MAPPING_NOT_FOUND"


class MappingExists(AlreadyExists):
    reason = "MAPPING_EXISTS"
