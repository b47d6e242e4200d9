"""What can go wrong when calling a provider, as domain errors that know whether to retry.

    ProviderError (DomainError)                 provider, status_code, provider_code, ...
    ├── ProviderTimeout           retryable  outage   UNAVAILABLE / PROVIDER_UNAVAILABLE
    ├── ProviderNetworkError      retryable  outage   UNAVAILABLE / PROVIDER_UNAVAILABLE
    ├── ProviderServerError       retryable  outage   UNAVAILABLE / PROVIDER_UNAVAILABLE
    ├── ProviderRateLimited       retryable           RESOURCE_EXHAUSTED / RATE_LIMITED
    ├── ProviderAuthError         final               FAILED_PRECONDITION / TOKEN_EXPIRED
    ├── ProviderPermissionDenied  final      FAILED_PRECONDITION / PROVIDER_PERMISSION_DENIED
    └── ProviderRejected          final               FAILED_PRECONDITION / PROVIDER_REJECTED

Each concrete class also inherits the matching class of `server.errors` (listed first, so its
`grpc_code` and `reason` win), so the error interceptor maps provider failures like any other.

`retryable` decides whether to try again; `outage` whether the failure says the provider is
down (and so counts toward its circuit breaker). A rate limit is retryable but no outage:
Meta's limits are per app, user or page, and one tenant's throttled token must not cut every
tenant off. A rejection or a dead token is final and no outage: the provider answered.
"""

from __future__ import annotations

from server.errors import (
    DomainError,
    FailedPrecondition,
    ProviderUnavailable,
    ResourceExhausted,
    TokenExpired,
)

# Provider messages end up in gRPC error details; keep them short.
_MAX_MESSAGE = 300


class ProviderError(DomainError):
    """A call to `provider` failed. Raised by `server.providers.http`, read by the retry code.

    Attributes:
        provider: our name for the API ("waha", "meta_graph", "google_calendar", ...).
        status_code: HTTP status, if a response arrived.
        retryable: whether another attempt may succeed (instance value overrides the class).
        retry_after: seconds the provider asked us to wait (Retry-After and friends), if any.
        provider_code: the provider's own error code (Graph `code`, Google `reason`, OAuth `error`).
        provider_subcode: Graph `error_subcode` (e.g. 463 expired, 460 password changed).
        fbtrace_id: Meta's trace id, for support tickets and our logs.
    """

    outage: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status_code: int | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        provider_code: str | int | None = None,
        provider_subcode: int | None = None,
        fbtrace_id: str | None = None,
    ) -> None:
        text = f"{provider}: {message}"
        if len(text) > _MAX_MESSAGE:
            text = text[: _MAX_MESSAGE - 1] + "…"
        metadata = {"provider": provider}
        if status_code is not None:
            metadata["status_code"] = str(status_code)
        if provider_code is not None:
            metadata["provider_code"] = str(provider_code)
        if fbtrace_id:
            metadata["fbtrace_id"] = fbtrace_id
        super().__init__(text, metadata=metadata, retry_after=retry_after)
        self.provider = provider
        self.status_code = status_code
        self.provider_code = provider_code
        self.provider_subcode = provider_subcode
        self.fbtrace_id = fbtrace_id
        if retryable is not None:
            self.retryable = retryable

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, status_code={self.status_code!r},"
            f" provider_code={self.provider_code!r}, retryable={self.retryable!r},"
            f" retry_after={self.retry_after!r})"
        )


class ProviderTimeout(ProviderUnavailable, ProviderError):
    """No answer in time (connect, read, or our per-attempt limit)."""

    retryable = True
    outage = True


class ProviderNetworkError(ProviderUnavailable, ProviderError):
    """Could not connect, or the connection was reset / closed mid-answer."""

    retryable = True
    outage = True


class ProviderServerError(ProviderUnavailable, ProviderError):
    """5xx, or an error the provider calls transient (Graph codes 1/2, Google backendError)."""

    retryable = True
    outage = True


class ProviderRateLimited(ResourceExhausted, ProviderError):
    """429, Graph throttling codes (4, 17, 32, 613, 80000-80014), Google rate/quota reasons."""

    retryable = True


class ProviderAuthError(TokenExpired, ProviderError):
    """The credential was refused (401, Graph 190, OAuth invalid_grant): owner must reconnect."""

    retryable = False


class PlatformCredentialsInvalid(FailedPrecondition, ProviderError):
    """The provider refused the platform's own credential (WAHA's API key): a misconfiguration
    for the super admin to fix, not a member's expired token; nobody need reconnect."""

    reason = "PLATFORM_CREDENTIALS_INVALID"
    retryable = False


class ProviderPermissionDenied(FailedPrecondition, ProviderError):
    """The credential works but lacks a permission (Graph 10 / 200-299, Google forbidden)."""

    reason = "PROVIDER_PERMISSION_DENIED"
    retryable = False


class ProviderRejected(FailedPrecondition, ProviderError):
    """The provider refused this request as it is (400/404/409/422...): retrying will not help."""

    reason = "PROVIDER_REJECTED"
    retryable = False
