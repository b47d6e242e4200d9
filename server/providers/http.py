"""Turning httpx failures and provider error responses into `ProviderError`s, in one place.

Provider clients wrap each call:

    async with translate_errors("waha"):
        response = await self._http.post("/api/sendText", json=body)
        raise_for_provider_response("waha", response)

Most specific evidence wins: a provider's own error code in the body (Graph `code`, Google
`reason`, OAuth `error`) over the HTTP status, because Graph sends throttling and dead tokens
as plain 400s, and Google sends rate limits as 403s.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

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

_ErrorClass = type[ProviderError]


def quiet_client_logs() -> None:
    """httpx logs every request at INFO: a line per provider call on the hot path. Failures
    are reported by our own code, with the provider's name and the secrets masked."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


# Graph API error codes (docs/providers.md, Meta Graph). Ranges are handled in `_graph_class`.
_GRAPH_CODES: Mapping[int, _ErrorClass] = {
    1: ProviderServerError,  # unknown / transient
    2: ProviderServerError,  # service temporarily unavailable
    4: ProviderRateLimited,  # app rate limit
    17: ProviderRateLimited,  # user rate limit
    32: ProviderRateLimited,  # page rate limit
    613: ProviderRateLimited,  # call rate limit
    10: ProviderPermissionDenied,
    100: ProviderRejected,  # invalid parameter
    102: ProviderAuthError,  # API session (login status or token expired)
    190: ProviderAuthError,  # invalid/expired token, subcode says why
}

# Google `errors[].reason` (docs/providers.md, Google Calendar).
_GOOGLE_REASONS: Mapping[str, _ErrorClass] = {
    "rateLimitExceeded": ProviderRateLimited,
    "userRateLimitExceeded": ProviderRateLimited,
    "quotaExceeded": ProviderRateLimited,
    "dailyLimitExceeded": ProviderRateLimited,
    "backendError": ProviderServerError,
    "authError": ProviderAuthError,
    "forbidden": ProviderPermissionDenied,
    "forbiddenForNonOrganizer": ProviderPermissionDenied,
    "insufficientPermissions": ProviderPermissionDenied,
}
# Quota reasons mean "hours, not seconds" (Calendar creation limits, Gmail daily sends).
_GOOGLE_LONG_BACKOFF = frozenset({"quotaExceeded", "dailyLimitExceeded"})
GOOGLE_QUOTA_RETRY_AFTER_S = 3600.0

# Google `error.status` (newer APIs), used when no reason matched.
_GOOGLE_STATUSES: Mapping[str, _ErrorClass] = {
    "UNAUTHENTICATED": ProviderAuthError,
    "PERMISSION_DENIED": ProviderPermissionDenied,
    "RESOURCE_EXHAUSTED": ProviderRateLimited,
    "UNAVAILABLE": ProviderServerError,
}

# OAuth 2.0 token endpoint `{"error": "<string>"}` (RFC 6749 5.2): the grant or client is dead.
_OAUTH_ERRORS: Mapping[str, _ErrorClass] = {
    "invalid_grant": ProviderAuthError,
    "invalid_client": ProviderAuthError,
    "unauthorized_client": ProviderAuthError,
}

# HTTP status, the last resort. Anything else: 5xx -> server error, other -> rejected.
_STATUSES: Mapping[int, _ErrorClass] = {
    401: ProviderAuthError,
    403: ProviderAuthError,
    408: ProviderTimeout,
    429: ProviderRateLimited,
    # 501/505 will not change by retrying: the provider does not do this at all.
    501: ProviderRejected,
    505: ProviderRejected,
}


@dataclass(frozen=True)
class _Detail:
    """What a provider's error body says, whatever its shape."""

    message: str | None = None
    code: str | int | None = None
    subcode: int | None = None
    fbtrace_id: str | None = None
    cls: _ErrorClass | None = None
    long_backoff: bool = False


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110 10.2.3).

    Returns None when absent or unreadable; never negative (a date in the past means now).
    """
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _business_use_case_wait(headers: httpx.Headers) -> float | None:
    """Meta's `X-Business-Use-Case-Usage` estimated_time_to_regain_access (minutes) as seconds."""
    raw = headers.get("x-business-use-case-usage")
    if not raw:
        return None
    try:
        usage = json.loads(raw)
        minutes = [
            float(entry.get("estimated_time_to_regain_access") or 0)
            for entries in usage.values()
            for entry in entries
        ]
    except (ValueError, AttributeError, TypeError):
        return None
    longest = max(minutes, default=0.0)
    return longest * 60 if longest > 0 else None


def _graph_class(code: int) -> _ErrorClass | None:
    if code in _GRAPH_CODES:
        return _GRAPH_CODES[code]
    if 200 <= code <= 299:
        return ProviderPermissionDenied
    if 80000 <= code <= 80014:  # business use case throttling
        return ProviderRateLimited
    return None


def _graph_detail(err: Mapping[str, Any]) -> _Detail:
    code = err.get("code")
    subcode = err.get("error_subcode")
    cls = _graph_class(code) if isinstance(code, int) else None
    if cls is None and err.get("is_transient") is True:
        cls = ProviderServerError
    message = _text(err.get("message"))
    user_msg = _text(err.get("error_user_msg"))
    if user_msg and user_msg != message:
        # CAPI says which event and field were wrong only in error_user_msg.
        message = f"{message}: {user_msg}" if message else user_msg
    return _Detail(
        message=message,
        code=code if isinstance(code, int) else None,
        subcode=subcode if isinstance(subcode, int) else None,
        fbtrace_id=str(err["fbtrace_id"]) if err.get("fbtrace_id") else None,
        cls=cls,
    )


def _google_detail(err: Mapping[str, Any]) -> _Detail:
    reasons: list[str] = [
        e["reason"]
        for e in err.get("errors") or ()
        if isinstance(e, Mapping) and isinstance(e.get("reason"), str)
    ]
    message = _text(err.get("message"))
    for reason in reasons:
        if reason in _GOOGLE_REASONS:
            return _Detail(
                message=message,
                code=reason,
                cls=_GOOGLE_REASONS[reason],
                long_backoff=reason in _GOOGLE_LONG_BACKOFF,
            )
    status = err.get("status") if isinstance(err.get("status"), str) else None
    return _Detail(
        message=message,
        code=reasons[0] if reasons else status,
        cls=_GOOGLE_STATUSES.get(status) if status else None,
    )


def _text(value: object) -> str | None:
    return str(value) if value else None


def _is_graph(err: Mapping[str, Any]) -> bool:
    return any(k in err for k in ("fbtrace_id", "type", "error_subcode", "is_transient"))


def _detail(body: object) -> _Detail:
    """Read the error body shapes of docs/providers.md: Graph, Google, OAuth, WAHA, Instagram."""
    if not isinstance(body, Mapping):
        return _Detail()
    err = body.get("error")
    if isinstance(err, Mapping):
        return _graph_detail(err) if _is_graph(err) else _google_detail(err)
    if isinstance(err, str) and err in _OAUTH_ERRORS:  # OAuth token endpoint
        return _Detail(
            message=str(body.get("error_description") or err), code=err, cls=_OAUTH_ERRORS[err]
        )
    # WAHA (NestJS: message may be a list), Instagram token errors (error_message), others.
    message = body.get("error_message") or body.get("message") or body.get("error_description")
    if isinstance(message, list):
        message = "; ".join(str(m) for m in message)
    return _Detail(message=str(message) if message else None)


def _json_body(response: httpx.Response) -> object:
    try:
        return response.json()
    except (ValueError, httpx.ResponseNotRead, UnicodeDecodeError):
        return None


def _status_class(status: int) -> _ErrorClass:
    if status in _STATUSES:
        return _STATUSES[status]
    return ProviderServerError if status >= 500 else ProviderRejected


def error_from_response(
    provider: str, response: httpx.Response, *, now: datetime | None = None
) -> ProviderError:
    """The `ProviderError` an error response stands for (not raised: the caller raises it)."""
    status = response.status_code
    detail = _detail(_json_body(response))
    cls = detail.cls or _status_class(status)
    retry_after = parse_retry_after(response.headers.get("retry-after"), now)
    if retry_after is None and cls is ProviderRateLimited:
        retry_after = _business_use_case_wait(response.headers)
    if detail.long_backoff:
        retry_after = max(retry_after or 0.0, GOOGLE_QUOTA_RETRY_AFTER_S)
    message = detail.message or response.reason_phrase or f"HTTP {status}"
    return cls(
        f"HTTP {status}: {message}",
        provider=provider,
        status_code=status,
        retry_after=retry_after,
        provider_code=detail.code,
        provider_subcode=detail.subcode,
        fbtrace_id=detail.fbtrace_id,
    )


def raise_for_provider_response(provider: str, response: httpx.Response) -> httpx.Response:
    """Return `response` if it is a success (2xx); raise its `ProviderError` otherwise.

    A 3xx counts as an error: provider APIs do not redirect, and httpx does not follow.
    """
    if response.is_success:
        return response
    raise error_from_response(provider, response)


@asynccontextmanager
async def translate_errors(provider: str) -> AsyncIterator[None]:
    """Re-raise httpx failures inside the block as `ProviderError`s (`from` the original).

    ProviderErrors pass through untouched. httpx errors that are our own bugs
    (`LocalProtocolError`, `UnsupportedProtocol`, invalid URLs) are left alone so they fail
    loudly instead of being retried. `asyncio.CancelledError` is never caught.
    """
    try:
        yield
    except ProviderError:
        raise
    except httpx.HTTPStatusError as exc:
        raise error_from_response(provider, exc.response) from exc
    except httpx.TimeoutException as exc:
        raise ProviderTimeout(_describe(exc), provider=provider) from exc
    except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as exc:
        raise ProviderNetworkError(_describe(exc), provider=provider) from exc


def _describe(exc: httpx.HTTPError) -> str:
    # The exception text, never the URL: query strings may carry access tokens.
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
