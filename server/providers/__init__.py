"""One HTTP client per external API, and the error translation they share."""

from __future__ import annotations

from server.providers.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNetworkError,
    ProviderPermissionDenied,
    ProviderRateLimited,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
)
from server.providers.http import (
    error_from_response,
    parse_retry_after,
    raise_for_provider_response,
    translate_errors,
)

__all__ = [
    "ProviderAuthError",
    "ProviderError",
    "ProviderNetworkError",
    "ProviderPermissionDenied",
    "ProviderRateLimited",
    "ProviderRejected",
    "ProviderServerError",
    "ProviderTimeout",
    "error_from_response",
    "parse_retry_after",
    "raise_for_provider_response",
    "translate_errors",
]
