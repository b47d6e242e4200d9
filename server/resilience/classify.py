"""The two questions the retry and breaker code ask of a failure, answered from attributes only.

Retry decisions read `retryable` and `retry_after` (set by `server.errors` classes and
`ProviderError`) and nothing else: no status codes, no message matching. An exception without
them (a bug in our code) is not retryable, so it fails at once instead of being hidden.
"""

from __future__ import annotations

from server.errors import CircuitOpen, ProviderUnavailable
from server.providers.errors import ProviderError


def is_retryable(exc: BaseException) -> bool:
    return getattr(exc, "retryable", False) is True


def retry_after_of(exc: BaseException) -> float | None:
    value = getattr(exc, "retry_after", None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value > 0 else None


def is_outage(exc: BaseException) -> bool:
    """Does this failure say the provider is down (and so count toward its breaker)?

    ProviderErrors say so themselves (`outage`). A bare `TimeoutError` (an attempt that hit
    its limit) and a `ProviderUnavailable` raised by hand count too. `CircuitOpen` never
    does: the breaker must not feed on its own fail-fast answers.
    """
    if isinstance(exc, CircuitOpen):
        return False
    if isinstance(exc, ProviderError):
        return exc.outage
    return isinstance(exc, TimeoutError | ProviderUnavailable)


def is_provider_answer(exc: BaseException) -> bool:
    """A definite answer from a reachable provider (400, dead token, rate limit): it is up."""
    return isinstance(exc, ProviderError) and not exc.outage
