"""Retrying a provider call inside a request (RPCs that call a provider directly).

Work that must happen goes through the job queue instead, which uses the same policy,
`next_delay` and classification but waits in `proximo_retry_em` rather than in memory.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from server.errors import CircuitOpen
from server.providers.errors import ProviderTimeout
from server.resilience.backoff import RandomSource, next_delay
from server.resilience.breaker import CircuitBreaker
from server.resilience.classify import is_retryable, retry_after_of
from server.resilience.clock import Clock
from server.resilience.policies import RetryPolicy

T = TypeVar("T")

RetryHook = Callable[[BaseException, int, float], Awaitable[None] | None]


async def run_with_retry(
    policy: RetryPolicy,
    fn: Callable[[], Awaitable[T]],
    clock: Clock,
    rng: RandomSource | None = None,
    *,
    breaker: CircuitBreaker | None = None,
    provider: str | None = None,
    max_sleep_s: float | None = None,
    on_retry: RetryHook | None = None,
) -> T:
    """Call `fn` up to `policy.max_attempts` times; return its first result.

    Each attempt is limited to `policy.timeout_s` (real time); running over becomes a
    retryable `ProviderTimeout`. A non-retryable error is raised at once; after the last
    attempt the last error is raised (with a note saying how many attempts were made).

    Args:
        clock: waits between attempts happen on it (a FakeClock in tests).
        rng: jitter source; a fresh `random.Random()` if omitted.
        breaker: if given, each attempt asks it first and reports the outcome; an open
            circuit raises `CircuitOpen` at once (chained to the last failure, if any).
        provider: name used for timeout errors (defaults to the breaker's provider).
        max_sleep_s: longest wait this request will sit through. When the next wait is
            longer (a provider asking for minutes) the last error is raised now, carrying
            its `retry_after`, so the caller gets RetryInfo instead of a hung request.
            Defaults to the longest wait the policy itself computes: max_delay * (1+jitter).
        on_retry: called with (error, attempt number that failed, delay) before each wait.
    """
    rng = rng or random.Random()
    provider = provider or (breaker.provider if breaker else "unknown")
    max_sleep = policy.max_delay_s * (1 + policy.jitter) if max_sleep_s is None else max_sleep_s
    last: BaseException | None = None
    for attempt in range(1, policy.max_attempts + 1):
        try:
            permit = breaker.allow() if breaker else None
        except CircuitOpen as open_exc:
            raise open_exc from last
        try:
            async with asyncio.timeout(policy.timeout_s):
                result = await fn()
        except TimeoutError as exc:
            last = ProviderTimeout(
                f"attempt {attempt} took longer than {policy.timeout_s:g}s", provider=provider
            )
            last.__cause__ = exc
        except Exception as exc:
            last = exc
        except BaseException:  # cancellation: no verdict on the provider
            if breaker and permit:
                breaker.release(permit)
            raise
        else:
            if breaker and permit:
                breaker.record_success(permit)
            return result

        if breaker and permit:
            breaker.record_failure(permit, last)
        if not is_retryable(last):
            raise last
        if attempt == policy.max_attempts:
            last.add_note(f"{policy.operation}: gave up after {attempt} attempts")
            raise last
        delay = next_delay(policy, attempt, rng, retry_after_of(last))
        if delay > max_sleep:
            last.add_note(f"{policy.operation}: next attempt due in {delay:.1f}s, not waiting")
            raise last
        if on_retry is not None:
            maybe = on_retry(last, attempt, delay)
            if maybe is not None:
                await maybe
        await clock.sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover
